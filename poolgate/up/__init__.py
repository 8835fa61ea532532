"""`poolgate up`: the standalone gateway (Envoy, pickers, model servers on loopback) from YAML objects."""
