"""Objects for end-to-end stacks: the translator tests' builders, plus simulated model-server Deployments."""

from __future__ import annotations

from tests.translate.objects import (  # noqa: F401  (re-exported for the e2e tests)
    gateway, gateway_class, grant, pod, pool, pool_ref, route, service,
)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def sim_deployment(app: str, replicas: int = 2, ports: tuple[int, ...] = (8000,), model: str = MODEL,
                   args: tuple[str, ...] = ("--no-latency",), namespace: str = "default") -> dict:
    """A Deployment of `replicas` simulated pods labelled app=<app>, serving `model` on `ports`."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{
                         "name": "model-server", "image": "ghcr.io/poolgate/poolgate:test",
                         "args": ["sim", "--model", model, *args],
                         "ports": [{"containerPort": p} for p in ports]}]}}}}


def listener(port: int = 0) -> list[dict]:
    """One HTTP listener; port 0 is replaced by a free port when the stack starts."""
    return [{"name": "http", "port": port, "protocol": "HTTP"}]


def chat(model: str = MODEL, content: str = "hello", max_tokens: int = 4, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}
