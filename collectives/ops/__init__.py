"""One module per collective op, all filling the interface in `collectives.ops.base`."""
