"""What is sent and how: collective ops, MoE routing and dispatch/combine, payload codecs,
and the communication backends that move the bytes."""
