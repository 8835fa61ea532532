"""`poolgate translate`: Gateway API / InferencePool objects in, Envoy configuration (and status) out."""

from __future__ import annotations

import argparse
import sys

from poolgate import cli_options

DESCRIPTION = """\
Translate Gateway API and Inference Extension objects (GatewayClass, Gateway, HTTPRoute, ReferenceGrant,
InferencePool, InferenceObjective, InferenceModelRewrite, Services, Pods) into Envoy configuration.

With --out DIR it writes:
  DIR/bootstrap.yaml          a complete standalone bootstrap (`envoy -c DIR/bootstrap.yaml` runs it)
  DIR/bootstrap-dynamic.yaml  a bootstrap that loads DIR/xds/lds.yaml and DIR/xds/cds.yaml and reloads them
  DIR/xds/                    the listeners and clusters, swapped atomically on every write
Without --out the standalone bootstrap is printed. --status prints the computed status of every GatewayClass,
Gateway, HTTPRoute and InferencePool of poolgate's class as a JSON list.

With --target envoy-gateway it serves the InferencePools through a cluster's Envoy Gateway instead (Gateways of
class controllerName gateway.envoyproxy.io/gatewayclass-controller): it prints the Envoy Gateway resources as
multi-document YAML (--out DIR writes DIR/envoy-gateway.yaml), or with --status the InferencePool and HTTPRoute
status. See docs/envoy-gateway.md.

Exit codes: 0 success, 1 invalid input (each problem names the object and field), 2 bad usage."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    cli_options.add_object_files(parser)
    parser.add_argument("--out", metavar="DIR", help="directory to write the Envoy configuration into")
    parser.add_argument("--status", action="store_true", help="print the computed status objects as JSON")
    parser.add_argument(
        "--endpoints",
        choices=["static", "dns"],
        default="static",
        help="static: pool endpoints from the Pods given (standalone, default); dns: from the "
        "headless Service poolgate creates per pool (Kubernetes)",
    )
    cli_options.add_body_mode(parser)
    cli_options.add_picker_tls(
        parser,
        "call the pickers over TLS, which they serve by default (`poolgate picker --secure-serving`, as "
        "upstream); without --picker-ca the picker's certificate is not checked. --no-picker-tls for pickers "
        "run with --secure-serving=false (default: TLS)",
    )
    parser.add_argument(
        "--picker-ca",
        metavar="FILE",
        help="PEM CA bundle (a path Envoy reads) the pickers' certificates must chain to; they must "
        "also name the picker Service (DNS SAN <service>.<namespace>.svc[.<cluster domain>]). "
        "Implies --picker-tls",
    )
    parser.add_argument(
        "--picker-plaintext",
        action="store_true",
        help="--target envoy-gateway: call the pickers without TLS (by default they are called over TLS, unverified, "
        "as pickers serve a self-signed certificate by default)",
    )
    parser.add_argument(
        "--at-user-gateway",
        action="store_true",
        help="--target envoy-gateway: serve the inference routes on the user's own Gateways (companion routes that "
        "outrank the user's by one header match) instead of on poolgate's sibling Gateways",
    )
    parser.add_argument(
        "--model-router-service",
        metavar="NAMESPACE/NAME:PORT",
        help="--target envoy-gateway: the Service of `poolgate picker --role model-router`; rules matching "
        "X-Gateway-Model-Name are then routed by the model named in the request body",
    )
    parser.add_argument(
        "--target",
        choices=["envoy", "envoy-gateway"],
        default="envoy",
        help="envoy: poolgate's own Envoy configuration (default); envoy-gateway: resources for a "
        "cluster's Envoy Gateway",
    )
    parser.add_argument(
        "--gateway-class",
        metavar="NAME",
        help="with --target envoy-gateway: class of the Gateways poolgate creates (default: the class "
        "of the user's Gateway)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="also check the standalone bootstrap with `envoy --mode validate` (needs --out)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from poolgate.api import InvalidObjects, load_files
    from poolgate.envoy import validate
    from poolgate.translate import TranslateOptions, translate, xds
    from poolgate.translate.output import swap_directory, to_yaml, write_yaml

    try:
        objects = load_files(args.files)
    except InvalidObjects as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.target == "envoy-gateway":
        from poolgate.egtarget.command import run as run_envoy_gateway

        return run_envoy_gateway(args, objects)
    options = TranslateOptions(
        endpoints=args.endpoints,
        body_mode="BUFFERED" if args.body_mode == "buffered" else "FULL_DUPLEX_STREAMED",
        picker_tls=args.picker_tls or args.picker_ca is not None,
        picker_ca=str(Path(args.picker_ca).resolve()) if args.picker_ca else None,
    )
    translation = translate(objects, options)
    conflicts = translation.bind_conflicts()
    for conflict in conflicts:
        print(f"error: {conflict}", file=sys.stderr)
    if conflicts:
        return 1
    if not translation.ir.listeners:
        print(
            "warning: no Gateway of class with controllerName poolgate.dev/gateway-controller has a valid "
            "listener; the configuration has no listeners",
            file=sys.stderr,
        )
    if args.out:
        out = Path(args.out).resolve()
        write_yaml(out / "bootstrap.yaml", translation.bootstrap())
        write_yaml(out / "bootstrap-dynamic.yaml", xds.dynamic_bootstrap(str(out / "xds"), options))
        swap_directory(out / "xds", translation.discovery_files())
        print(f"wrote {out}/bootstrap.yaml, {out}/bootstrap-dynamic.yaml and {out}/xds/", file=sys.stderr)
        if args.validate:
            ok, output = validate(out / "bootstrap.yaml")
            if not ok:
                print(f"error: Envoy rejected the configuration:\n{output}", file=sys.stderr)
                return 1
            print("envoy --mode validate: OK", file=sys.stderr)
    elif args.validate:
        print("error: --validate needs --out", file=sys.stderr)
        return 2
    if args.status:
        print(json.dumps(translation.status(), indent=2))
    elif not args.out:
        sys.stdout.write(to_yaml(translation.bootstrap()))
    return 0
