"""`poolgate picker`: run the endpoint picker, the gRPC ext_proc service Envoy calls for every inference request."""

from __future__ import annotations

import argparse
import logging
import os

from picker.flags import add_bool, add_unused_flags, unused_flag_report
from poolgate import logs
from poolgate.api.contract import (
    LOAD_EXCHANGE_PEERS_FLAG,
    LOAD_EXCHANGE_PORT,
    LOAD_EXCHANGE_PORT_FLAG,
    LOAD_EXCHANGE_TTL_FLAG,
)

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
    add_bool(
        listen,
        "--secure-serving",
        True,
        "serve ext_proc over TLS, as upstream does by default: a self-signed certificate unless --cert-path "
        "is given; --secure-serving=false for plaintext (default: true)",
    )
    listen.add_argument("--cert-path", metavar="DIR", help="directory holding tls.crt and tls.key for --secure-serving")
    add_bool(
        listen,
        "--metrics-endpoint-auth",
        True,
        "on Kubernetes, /metrics needs a bearer token the API server accepts (TokenReview) and allows to get "
        "/metrics (SubjectAccessReview); off with --objects-file or without Kubernetes credentials (default: true)",
    )
    pools = parser.add_argument_group("pools")
    pools.add_argument(
        "--pool",
        action="append",
        metavar="NAMESPACE/NAME",
        help="an InferencePool to serve; repeat for several (default with --objects-file: every pool in the file)",
    )
    pools.add_argument("--pool-name", help="the one InferencePool to serve (upstream flag)")
    pools.add_argument(
        "--pool-namespace",
        default="",
        help="namespace of --pool-name (default: the NAMESPACE environment variable, then default)",
    )
    pools.add_argument(
        "--pool-group",
        default="inference.networking.k8s.io",
        help="API group of the pool (only inference.networking.k8s.io is served)",
    )
    pools.add_argument(
        "--endpoint-selector",
        metavar="KEY=VALUE,...",
        help="upstream's standalone mode without an InferencePool: refused (name a pool, or use --objects-file)",
    )
    pools.add_argument("--endpoint-target-ports", metavar="PORT,...", help="with --endpoint-selector: refused")
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
    scheduling.add_argument("--config-text", metavar="YAML", help="the EndpointPickerConfig itself, instead of a file")
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
        default=None,
        help="fallback endpoints after the primary in x-gateway-destination-endpoint, for every profile (default: "
        "the profile picker's maxNumOfEndpoints - 1: 2 for poolgate-default, 0 for llmd-default and for pickers "
        "that do not set it, as upstream)",
    )
    replicas = parser.add_argument_group(
        "picker replicas (poolgate extension: replicas of one pool's picker share their load over UDP)"
    )
    replicas.add_argument(
        LOAD_EXCHANGE_PEERS_FLAG,
        metavar="HOST:PORT,...",
        help="the other replicas' load exchange addresses; a host name counts every address it resolves to, again "
        "every 5 s (e.g. a headless Service selecting the replicas; a replica ignores its own datagrams). "
        "Default: no exchange, each replica counts only the requests it sent itself",
    )
    replicas.add_argument(
        LOAD_EXCHANGE_PORT_FLAG,
        type=int,
        default=LOAD_EXCHANGE_PORT,
        metavar="PORT",
        help=f"UDP port on which this replica hears its peers; 0: any free port (default: {LOAD_EXCHANGE_PORT})",
    )
    replicas.add_argument(
        LOAD_EXCHANGE_TTL_FLAG,
        type=_duration,
        default=60.0,
        metavar="SECONDS",
        help="a peer's request whose end was not heard within this time is forgotten, so a lost datagram or a dead "
        "peer leaves no phantom load (default: 60s)",
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
    logs.add_arguments(parser, default_level=None, default_format=None)
    logging_group = parser.add_argument_group("upstream logging flags (--log-level and --log-format win when given)")
    logging_group.add_argument(
        "-v",
        "--v",
        dest="verbosity",
        type=int,
        default=2,
        metavar="N",
        help="upstream log verbosity: 4 and more log at debug (default: 2)",
    )
    logging_group.add_argument("--zap-encoder", choices=("json", "console"), help="json lines or console text")
    logging_group.add_argument(
        "--zap-log-level", metavar="LEVEL", help="debug, info, error, panic, or a verbosity number (overrides -v)"
    )
    add_unused_flags(parser)
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
    from picker.server.loadexchange import parse_peers

    if args.endpoint_selector or args.endpoint_target_ports:
        raise ValueError(
            "--endpoint-selector/--endpoint-target-ports (upstream's mode without an InferencePool) is not "
            "supported: name an InferencePool with --pool-name, or give --objects-file"
        )
    if args.config_file and args.config_text:
        raise ValueError("give --config-file or --config-text, not both")
    pools = [parse_pool_key(value) for value in args.pool or []]
    if args.pool_name:
        namespace = args.pool_namespace or os.environ.get("NAMESPACE") or "default"
        pools.append(parse_pool_key(f"{namespace}/{args.pool_name}"))
    if args.pool_group != "inference.networking.k8s.io":
        raise ValueError(
            f"--pool-group {args.pool_group}: poolgate serves InferencePools of "
            "inference.networking.k8s.io (the v1alpha2 pool is no longer served upstream)"
        )
    if args.role != "model-router" and not pools and not args.objects_file:
        raise ValueError("name the pool to serve (--pool-name or --pool), or give --objects-file")
    if args.cert_path and not args.secure_serving:
        raise ValueError("--cert-path needs --secure-serving")
    if args.fallbacks is not None and args.fallbacks < 0:
        raise ValueError("--fallbacks must not be negative")
    if args.max_body_bytes <= 0:
        raise ValueError("--max-body-bytes must be positive")
    if not 0 <= args.load_exchange_port < 65536:
        raise ValueError(f"{LOAD_EXCHANGE_PORT_FLAG} must be within 0..65535")
    peers = parse_peers(args.load_exchange_peers or "")
    return PickerOptions(
        host=args.grpc_host,
        grpc_port=args.grpc_port,
        health_port=args.grpc_health_port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        pools=pools or None,
        objects_file=args.objects_file,
        kubeconfig=args.kubeconfig,
        config_file=args.config_file,
        config_text=args.config_text,
        profile=args.profile,
        role=args.role,
        fallbacks=args.fallbacks,
        max_body_bytes=args.max_body_bytes,
        refresh_metrics_interval=args.refresh_metrics_interval,
        secure_serving=args.secure_serving,
        cert_path=args.cert_path,
        metrics_endpoint_auth=args.metrics_endpoint_auth,
        conformance_steering=args.enable_conformance_steering,
        load_exchange_port=args.load_exchange_port,
        load_exchange_peers=peers,
        load_exchange_ttl=args.load_exchange_ttl,
    )


def log_settings(args: argparse.Namespace) -> tuple[str, bool]:
    """The log level and whether lines are JSON: --log-level/--log-format, else upstream's --zap-log-level, -v and
    --zap-encoder."""
    level = args.log_level
    if level is None:
        verbosity = args.verbosity
        zap_level = (args.zap_log_level or "").lower()
        if zap_level.isdigit():
            verbosity = int(zap_level)
        elif zap_level:
            level = {"debug": "debug", "info": "info", "error": "error", "panic": "error"}.get(zap_level)
            if level is None:
                raise ValueError(f"--zap-log-level {args.zap_log_level}: not debug, info, error, panic or a number")
        level = level or ("debug" if verbosity >= 4 else "info")
    json_lines = args.log_format == "json" if args.log_format else args.zap_encoder != "console"
    return level, json_lines


def run(args: argparse.Namespace) -> int:
    """Run the picker until SIGTERM or SIGINT; returns the exit code."""
    import sys

    from picker.scheduling.registry import ConfigError
    from poolgate.api import InvalidObjects

    try:
        level, json_lines = log_settings(args)
    except ValueError as error:
        print(f"poolgate picker: {error}", file=sys.stderr)
        return 2
    logs.setup(level, json_lines)
    try:
        options = options_from_args(args)
        unused = unused_flag_report(args)
        if unused:
            logging.getLogger("poolgate.picker").warning(
                "upstream flags accepted but not acted on", extra={"flags": unused}
            )
        from picker.server.app import run as run_picker

        run_picker(options)
    except (ValueError, ConfigError, OSError) as error:
        print(f"poolgate picker: {error}", file=sys.stderr)
        return 2
    except InvalidObjects as error:
        print(f"poolgate picker: {args.objects_file} is invalid:\n{error}", file=sys.stderr)
        return 2
    return 0
