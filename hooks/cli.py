"""`poolgate hooks`: serve the Metacontroller webhooks with gunicorn."""

from __future__ import annotations

import argparse
import sys

from poolgate import logs

DESCRIPTION = """\
Serve poolgate's Metacontroller webhooks (the DecoratorControllers in metacontroller/ call them):

  POST /gatewayclasses/sync               Accepted for GatewayClasses of poolgate's controllerName
  POST /gatewayclass-finalizer/customize  keep a poolgate GatewayClass while Gateways use it
  POST /gatewayclass-finalizer/sync
  POST /gateways/customize                Envoy (ConfigMap, Deployment, Service) and status per poolgate Gateway
  POST /gateways/sync
  POST /httproutes/customize              poolgate's status.parents entries of HTTPRoutes
  POST /httproutes/sync
  POST /inferencepools/customize          status.parents, endpoints Service and managed picker per InferencePool
  POST /inferencepools/sync
  GET  /healthz                           200 while the server runs

Opt-in, for Gateways of Envoy Gateway's class (metacontroller/envoy-gateway/, docs/envoy-gateway.md): what
`poolgate translate --target envoy-gateway` emits, as attachments, and its status:

  POST /envoy-gateway/gateways/customize       the sibling Gateway and its policies
  POST /envoy-gateway/gateways/sync
  POST /envoy-gateway/httproutes/customize     the companion route and its policies; status.parents entries
  POST /envoy-gateway/httproutes/sync
  POST /envoy-gateway/inferencepools/customize the Service standing for the pool's pods; status.parents entries
  POST /envoy-gateway/inferencepools/sync

Every hook answers 200 with its response, or 400 with a JSON message when the request is not one it can answer."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--bind", default="0.0.0.0:8080", metavar="HOST:PORT", help="address to listen on (default: 0.0.0.0:8080)"
    )
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="gunicorn worker processes (default: 2)")
    parser.add_argument(
        "--timeout",
        type=int,
        default=30,
        metavar="SECONDS",
        help="a worker silent for this long is restarted (default: 30)",
    )
    parser.add_argument(
        "--settings",
        metavar="FILE",
        help="YAML file of installation settings: images, replicas, Service type, picker profile "
        "(the Helm chart writes it; default: built-in defaults)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=32 * 1024 * 1024,
        metavar="BYTES",
        help="larger request bodies get 413 (default: 33554432 = 32 MiB)",
    )
    logs.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hooks.app import create_app
    from hooks.server import HooksServer
    from hooks.settings import SettingsError, load_settings

    logs.setup(args.log_level, args.log_format == "json")
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.settings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    app = create_app(settings, args.max_request_bytes)
    HooksServer(app, args.bind, args.workers, args.timeout).run()
    return 0
