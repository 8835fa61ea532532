"""`poolgate picker`: run the endpoint picker, the gRPC ext_proc service Envoy calls for every inference request."""

from __future__ import annotations

import argparse

from poolgate import logs

ROLES = ("endpoint-picker", "model-router", "both")

DESCRIPTION = """\
Run the endpoint picker: the Envoy ext_proc service (envoy.service.ext_proc.v3.ExternalProcessor) that chooses, for
every inference request, the model-server endpoint of an InferencePool that serves it. It reads `model` from the
JSON body, applies InferenceObjective priorities and InferenceModelRewrites, scores the pool's ready endpoints on the
metrics it scrapes from them (queue, KV cache, prefix cache, LoRA) and answers with the header and envoy.lb metadata
`x-gateway-destination-endpoint: primary,fallback,...`. Refused requests get OpenAI-style JSON errors: 400 invalid
body, 404 unknown model, 413 body too large, 429 shed, 503 no ready endpoint.

Pool state comes from Kubernetes (list + watch of the pools, their pods, objectives and rewrites) or, with
--objects-file, from a YAML file of the same objects, reloaded when it changes. One process may serve several pools:
Envoy names the pool of each call with the gRPC metadata `x-poolgate-pool: NAMESPACE/NAME`.

With --role model-router (or both) it is also the body-based router: it sets X-Gateway-Model-Name (and
X-Gateway-Base-Model-Name for known LoRA adapters) from the body and clears Envoy's route cache. See docs/picker.md."""

EPILOG = """\
examples:
  poolgate picker --pool-name llama --pool-namespace default          # in a cluster (service account)
  poolgate picker --objects-file objects.yaml --grpc-host 127.0.1.2   # standalone: every pool of the file
  poolgate picker --objects-file objects.yaml --pool default/llama --profile llmd-default
  poolgate picker --role model-router --grpc-port 9004 --objects-file objects.yaml"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `picker` arguments."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--grpc-host", default="0.0.0.0", metavar="ADDRESS", help="address of all three listeners (default: 0.0.0.0)"
    )
    listen.add_argument("--grpc-port", type=int, default=9002, help="ext_proc port (default: 9002)")
    listen.add_argument(
        "--grpc-health-port",
        type=int,
        default=9003,
        help="gRPC health port: services liveness, readiness, '' and the ext_proc service (default: 9003)",
    )
    listen.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="Prometheus /metrics port; 0 picks a free port, -1 disables (default: 9090)",
    )
    listen.add_argument(
        "--secure-serving",
        action="store_true",
        help="serve ext_proc over TLS (a self-signed certificate unless --cert-path is given)",
    )
    listen.add_argument("--cert-path", metavar="DIR", help="directory holding tls.crt and tls.key for --secure-serving")
    pools = parser.add_argument_group("pools")
    pools.add_argument(
        "--pool",
        action="append",
        metavar="NAMESPACE/NAME",
        help="an InferencePool to serve; repeat for several (default with --objects-file: every pool in the file)",
    )
    pools.add_argument("--pool-name", help="the one InferencePool to serve (upstream flag)")
    pools.add_argument("--pool-namespace", default="default", help="namespace of --pool-name (default: default)")
    pools.add_argument(
        "--pool-group",
        default="inference.networking.k8s.io",
        help="API group of the pool (only inference.networking.k8s.io is served)",
    )
    pools.add_argument(
        "--objects-file",
        metavar="FILE",
        help="read pools, pods, objectives and rewrites from this YAML file instead of Kubernetes; "
        "reloaded when it changes",
    )
    pools.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to use (default: the in-cluster service account, then ~/.kube/config)",
    )
    pools.add_argument(
        "--refresh-metrics-interval",
        type=_duration,
        default=0.05,
        metavar="SECONDS",
        help="how often each endpoint's /metrics is scraped, in seconds or as 50ms (default: 50ms)",
    )
    scheduling = parser.add_argument_group("scheduling")
    scheduling.add_argument(
        "--config-file",
        metavar="FILE",
        help="EndpointPickerConfig YAML with the plugins and scheduling profiles to run",
    )
    scheduling.add_argument(
        "--profile",
        metavar="NAME",
        help="scheduling profile: a built-in one (poolgate-default, the default, or llmd-default; "
        "see docs/scheduling.md), or a profile of --config-file (default: its first). "
        "A pool's annotation poolgate.dev/scheduling-profile overrides it",
    )
    scheduling.add_argument(
        "--fallbacks",
        type=int,
        default=2,
        help="fallback endpoints after the primary in x-gateway-destination-endpoint (default: 2)",
    )
    requests = parser.add_argument_group("requests")
    requests.add_argument(
        "--role",
        choices=ROLES,
        default="endpoint-picker",
        help="endpoint-picker (default); model-router: body-based routing only; both: the callout "
        "with gRPC metadata x-poolgate-callout: model-router routes, the others pick",
    )
    requests.add_argument(
        "--max-body-bytes",
        type=int,
        default=10 * 1024 * 1024,
        help="largest request body accepted; larger ones get 413 (default: 10 MiB)",
    )
    requests.add_argument(
        "--enable-conformance-steering",
        action="store_true",
        help="honour the conformance tests' header test-epp-endpoint-selection (never in production)",
    )
    logs.add_arguments(parser)
    parser.set_defaults(run=run)


def _duration(text: str) -> float:
    from picker.scheduling.registry import parse_duration

    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def options_from_args(args: argparse.Namespace):
    """The PickerOptions the arguments describe; ValueError when they are inconsistent."""
    from picker.discovery.view import parse_pool_key
    from picker.server.app import PickerOptions

    pools = [parse_pool_key(value) for value in args.pool or []]
    if args.pool_name:
        pools.append(parse_pool_key(f"{args.pool_namespace}/{args.pool_name}"))
    if args.pool_group != "inference.networking.k8s.io":
        raise ValueError(
            f"--pool-group {args.pool_group}: poolgate serves InferencePools of "
            "inference.networking.k8s.io (the v1alpha2 pool is no longer served upstream)"
        )
    if args.role != "model-router" and not pools and not args.objects_file:
        raise ValueError("name the pool to serve (--pool-name or --pool), or give --objects-file")
    if args.cert_path and not args.secure_serving:
        raise ValueError("--cert-path needs --secure-serving")
    if args.fallbacks < 0:
        raise ValueError("--fallbacks must not be negative")
    if args.max_body_bytes <= 0:
        raise ValueError("--max-body-bytes must be positive")
    return PickerOptions(
        host=args.grpc_host,
        grpc_port=args.grpc_port,
        health_port=args.grpc_health_port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        pools=pools or None,
        objects_file=args.objects_file,
        kubeconfig=args.kubeconfig,
        config_file=args.config_file,
        profile=args.profile,
        role=args.role,
        fallbacks=args.fallbacks,
        max_body_bytes=args.max_body_bytes,
        refresh_metrics_interval=args.refresh_metrics_interval,
        secure_serving=args.secure_serving,
        cert_path=args.cert_path,
        conformance_steering=args.enable_conformance_steering,
    )


def run(args: argparse.Namespace) -> int:
    """Run the picker until SIGTERM or SIGINT; returns the exit code."""
    import sys

    from picker.scheduling.registry import ConfigError
    from poolgate.api import InvalidObjects

    logs.setup(args.log_level, args.log_format == "json")
    try:
        options = options_from_args(args)
        from picker.server.app import run as run_picker

        run_picker(options)
    except (ValueError, ConfigError, OSError) as error:
        print(f"poolgate picker: {error}", file=sys.stderr)
        return 2
    except InvalidObjects as error:
        print(f"poolgate picker: {args.objects_file} is invalid:\n{error}", file=sys.stderr)
        return 2
    return 0
