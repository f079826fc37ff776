"""Pure models of clusters: nodes, GPUs, NICs, planes, leaves and spines; rank maps;
traffic matrices routed onto links; and a flow-level fabric simulator. No processes,
no environment, no files except the packaged presets."""
