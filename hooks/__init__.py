"""Metacontroller webhooks: poolgate's Kubernetes reconciler.

Every hook is a pure function from a Metacontroller request (JSON) to its response (JSON): the Gateway API and
Inference Extension objects in the request go through the same translator as `poolgate translate`, and come back as
attachments (Envoy and picker Deployments, Services, ConfigMaps) and status. `hooks.app` wraps them in Flask,
`hooks.cli` serves them with gunicorn (`poolgate hooks`)."""
