"""`poolgate translate --target envoy-gateway`: the Envoy Gateway resources as multi-document YAML (or status)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Literal

from poolgate.api import KubeObject


def run(args: argparse.Namespace, objects: list[KubeObject]) -> int:
    """Print (or write to --out DIR/envoy-gateway.yaml) the resources; --status prints the status instead."""
    from poolgate.egtarget import CalloutService, EnvoyGatewayOptions, translate_envoy_gateway
    from poolgate.translate.options import TranslateOptions
    from poolgate.translate.output import to_yaml

    if args.at_user_gateway and args.model_router_service:
        print(
            "error: --model-router-service: model routing needs the sibling Gateway (not --at-user-gateway)",
            file=sys.stderr,
        )
        return 2
    if args.validate:
        print("error: --validate checks poolgate's own Envoy configuration; it needs --target envoy", file=sys.stderr)
        return 2
    body_mode: Literal["FULL_DUPLEX_STREAMED", "BUFFERED"] = (
        "BUFFERED" if args.body_mode == "buffered" else "FULL_DUPLEX_STREAMED"
    )
    model_router = None
    if args.model_router_service:
        match = re.fullmatch(r"([a-z0-9-]+)/([a-z0-9-]+):([0-9]+)", args.model_router_service)
        if match is None:
            print("error: --model-router-service: expected NAMESPACE/NAME:PORT", file=sys.stderr)
            return 2
        namespace, name, port = match.groups()
        model_router = CalloutService(namespace, name, int(port), f"model router Service {namespace}/{name}")
    options = EnvoyGatewayOptions(
        gateway_class=args.gateway_class,
        picker_tls=not args.picker_plaintext,
        model_router=model_router,
        at_user_gateway=args.at_user_gateway,
        translate=TranslateOptions(body_mode=body_mode),
    )
    translation = translate_envoy_gateway(objects, options)
    for warning in translation.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if args.status:
        print(json.dumps(translation.status(), indent=2))
        return 0
    text = "".join(f"---\n{to_yaml(obj)}" for obj in translation.objects())
    if args.out:
        path = Path(args.out).resolve() / "envoy-gateway.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
