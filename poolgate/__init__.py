"""poolgate: an inference gateway for Kubernetes (Gateway API Inference Extension on Envoy)."""

__version__ = "0.1.0"
