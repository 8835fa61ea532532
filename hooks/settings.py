"""What an installation decides for every Gateway and pool: images, replicas, Service type, picker defaults.

Read once at start-up from a YAML file (the Helm chart writes it from its values); the hooks stay pure functions of
(request, settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from poolgate import __version__
from poolgate.api.load import field_path
from poolgate.egtarget import EG_CONTROLLER

Resources = dict[Literal["requests", "limits"], dict[str, str | int | float]]


def _requests(cpu: str, memory: str) -> Resources:
    return {"requests": {"cpu": cpu, "memory": memory}}


class HookSettings(BaseModel):
    """Installation-wide choices the hooks apply to what they generate (camelCase keys in the YAML file)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    poolgate_image: str = f"ghcr.io/poolgate/poolgate:{__version__}"
    envoy_image: str = "envoyproxy/envoy:v1.40.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    envoy_replicas: int = Field(default=1, ge=0)
    envoy_log_level: Literal["trace", "debug", "info", "warning", "error", "critical", "off"] = "info"
    gateway_service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    picker_profile: str = Field(default="poolgate-default", min_length=1, max_length=253)
    picker_replicas: int = Field(default=1, ge=0)
    cluster_domain: str = "cluster.local"
    # ReferenceGrant's version the cluster serves: v1 (current Gateway API standard channel) or v1beta1 (older
    # releases). A related rule naming a version the cluster does not serve fails every sync of its controller.
    reference_grant_version: Literal["v1", "v1beta1"] = "v1"
    # The controllerName of Envoy Gateway's GatewayClasses: the Envoy Gateway hooks (opt-in) serve their Gateways.
    envoy_gateway_controller_name: str = Field(default=EG_CONTROLLER, min_length=1, max_length=253)
    # Serve the inference routes on the user's own Envoy Gateway Gateways (`--at-user-gateway`) instead of siblings.
    envoy_gateway_at_user_gateway: bool = False
    envoy_resources: Resources = Field(default_factory=lambda: _requests("100m", "128Mi"))
    model_router_resources: Resources = Field(default_factory=lambda: _requests("50m", "64Mi"))
    picker_resources: Resources = Field(default_factory=lambda: _requests("100m", "128Mi"))

    @property
    def reference_grant_api(self) -> str:
        """The apiVersion the customize hooks ask ReferenceGrants in."""
        return f"gateway.networking.k8s.io/{self.reference_grant_version}"

    def resources(self, which: str) -> dict[str, Any]:
        """The Kubernetes `resources` block for `envoy`, `model_router` or `picker` containers."""
        return {kind: dict(values) for kind, values in getattr(self, f"{which}_resources").items()}


class SettingsError(Exception):
    """The settings file is missing, not YAML, or has a field that is wrong (named in the message)."""


def load_settings(path: str | Path | None) -> HookSettings:
    """Settings from a YAML file, or the defaults when `path` is None."""
    if path is None:
        return HookSettings()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise SettingsError(f"{path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        return HookSettings.model_validate(raw)
    except ValidationError as error:
        raise SettingsError(
            "; ".join(f"{path}: {field_path(e['loc'])}: {e['msg']}" for e in error.errors(include_url=False))
        ) from None
