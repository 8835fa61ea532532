"""The Helm chart (helm/poolgate) and the DecoratorControllers (metacontroller/), with the real helm binary: lint,
render, validate every rendered object against the Kubernetes schemas or its CRD, and check the pieces agree with
each other (paths the app serves, settings the hooks read, CRDs of crds/)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile

import pytest
import yaml

from hooks import gateway
from hooks.app import HOOKS
from hooks.settings import HookSettings, load_settings
from hooks.uninstall import Resource, build_parser
from tests.conftest import REPO
from tests.hooks.helm import helm, helm_binary

CHART = REPO / "helm" / "poolgate"
CONTROLLERS = sorted((REPO / "metacontroller").glob("*.yaml"))
EG_CONTROLLERS = sorted((REPO / "metacontroller" / "envoy-gateway").glob("*.yaml"))  # opt-in: envoyGateway.enabled


def render(*args: str, chart=CHART, release: str = "poolgate", namespace: str = "poolgate-system") -> list[dict]:
    return [
        doc for doc in yaml.safe_load_all(helm("template", release, str(chart), "--namespace", namespace, *args)) if doc
    ]


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render()


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def test_chart_lints_clean():
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--strict")


def test_every_rendered_object_is_valid(rendered, schemas):
    kinds = sorted({obj["kind"] for obj in rendered})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DecoratorController",
        "Deployment",
        "GatewayClass",
        "Job",
        "Service",
        "ServiceAccount",
    ]
    for obj in rendered:
        schemas.validate(obj)


def test_hooks_deployment_runs_poolgate_hooks_behind_its_service(rendered):
    deployment = of_kind(rendered, "Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/poolgate/poolgate:0.1.0"
    assert container["args"][0] == "hooks" and "--settings=/etc/poolgate/hooks/settings.yaml" in container["args"]
    service = next(s for s in of_kind(rendered, "Service") if s["metadata"]["name"] == "poolgate-hooks")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_rendered_settings_are_what_the_hooks_read(tmp_path):
    objects = render(
        "--set",
        "envoy.image.tag=v1.41.0",
        "--set",
        "picker.profile=llmd-default",
        "--set",
        "envoy.serviceType=ClusterIP",
        "--set",
        "image.tag=1.2.3",
    )
    config_map = next(c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "poolgate-hooks")
    path = tmp_path / "settings.yaml"
    path.write_text(config_map["data"]["settings.yaml"])
    settings = load_settings(path)
    assert settings == HookSettings(
        envoy_image="envoyproxy/envoy:v1.41.0",
        picker_profile="llmd-default",
        gateway_service_type="ClusterIP",
        poolgate_image="ghcr.io/poolgate/poolgate:1.2.3",
    )


def test_metacontroller_manifests_call_exactly_the_paths_the_app_serves(schemas):
    called = set()
    for path in CONTROLLERS + EG_CONTROLLERS:
        controller = yaml.safe_load(path.read_text())
        schemas.validate(controller)
        for hook in controller["spec"]["hooks"].values():
            assert hook["version"] == "v2"
            assert hook["webhook"]["service"] == {"name": "poolgate-hooks", "namespace": "poolgate-system", "port": 80}
            called.add(hook["webhook"]["path"])
    assert called == set(HOOKS)


def test_chart_controllers_are_the_manifests_pointed_at_the_release():
    objects = render("--set", "hooks.service.port=8081", release="gw", namespace="infra")
    rendered = {c["metadata"]["name"]: c for c in of_kind(objects, "DecoratorController")}
    assert len(rendered) == len(CONTROLLERS)
    for path in CONTROLLERS:
        source = yaml.safe_load(path.read_text())
        controller = rendered[source["metadata"]["name"]]
        for name, hook in controller["spec"]["hooks"].items():
            assert hook["webhook"].pop("service") == {"name": "gw-poolgate-hooks", "namespace": "infra", "port": 8081}
            source["spec"]["hooks"][name]["webhook"].pop("service")
        assert controller["spec"] == source["spec"]
        assert controller["metadata"]["labels"]["app.kubernetes.io/instance"] == "gw"


def crd_sources(directory=REPO / "crds") -> dict[str, dict]:
    return {
        doc["metadata"]["name"]: doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def test_crds_come_from_helms_crds_directory_and_never_from_templates(rendered):
    """Helm creates crds/ CRDs missing from the cluster and skips present ones; CRDs as templates would be owned by
    the release and collide with an InferencePool CRD another gateway installed. So no template renders one."""
    assert not of_kind(rendered, "CustomResourceDefinition")
    crds = {crd["metadata"]["name"]: crd for crd in of_kind(render("--include-crds"), "CustomResourceDefinition")}
    sources = crd_sources()
    assert sorted(crds) == sorted(sources) and len(crds) == 5
    for name, crd in crds.items():
        assert crd == sources[name]
    assert not of_kind(render("--set", "gatewayClass.create=false"), "GatewayClass")
    unbound = render("--set", "metacontroller.rbac.create=false")
    assert [r["metadata"]["name"] for r in of_kind(unbound, "ClusterRole")] == ["poolgate-uninstall"]


def render_error(*args: str) -> str:
    """What `helm template` prints when it refuses to render."""
    command = [str(helm_binary()), "template", "poolgate", str(CHART), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, f"helm template {' '.join(args)} rendered"
    return result.stderr


def test_the_removed_crds_install_value_fails_with_a_message():
    error = render_error("--set", "crds.install=false")
    assert "crds.install: removed" in error and "--skip-crds" in error


GATEWAY_SERVED = ("--api-versions", "gateway.networking.k8s.io/v1/Gateway")
ONLY_V1BETA1_GRANTS = (*GATEWAY_SERVED, "--api-versions", "gateway.networking.k8s.io/v1beta1/ReferenceGrant")


def test_reference_grant_version_must_be_one_the_cluster_serves(tmp_path, reference_crds):
    error = render_error(*ONLY_V1BETA1_GRANTS)
    assert "gatewayAPI.referenceGrantVersion" in error and "gateway.networking.k8s.io/v1/ReferenceGrant" in error
    objects = render(*ONLY_V1BETA1_GRANTS, "--set", "gatewayAPI.referenceGrantVersion=v1beta1")
    config_map = next(c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "poolgate-hooks")
    path = tmp_path / "settings.yaml"
    path.write_text(config_map["data"]["settings.yaml"])
    assert load_settings(path).reference_grant_api == "gateway.networking.k8s.io/v1beta1"
    render(*GATEWAY_SERVED, "--api-versions", "gateway.networking.k8s.io/v1/ReferenceGrant")
    # the documented minimum: Gateway API v1.6.1's standard channel serves ReferenceGrant as v1
    grant_crd = yaml.safe_load(
        (reference_crds / "gateway-api" / "gateway.networking.k8s.io_referencegrants.yaml").read_text()
    )
    assert grant_crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.6.1"
    assert {v["name"] for v in grant_crd["spec"]["versions"] if v["served"]} == {"v1", "v1beta1"}


def test_the_model_rewrite_versions_the_gateway_hook_reads_must_be_served():
    """With InferencePools served but one of the InferenceModelRewrite versions the Gateway hook asks for missing
    (`helm install --skip-crds`), the install fails naming it instead of every Gateway sync failing."""
    pools = ("--api-versions", "inference.networking.k8s.io/v1/InferencePool")
    versions = gateway.MODEL_REWRITE_API_VERSIONS
    for missing in versions:
        served = [arg for v in versions if v != missing for arg in ("--api-versions", f"{v}/InferenceModelRewrite")]
        error = render_error(*pools, *served)
        assert f"InferenceModelRewrite {missing}" in error and "crds/" in error
    render(*pools, *(arg for v in versions for arg in ("--api-versions", f"{v}/InferenceModelRewrite")))


def test_multi_document_crd_files_render_unchanged(tmp_path, reference_crds):
    """The chart's crds/ is a symlink; here it points at a file holding three CRDs (Metacontroller's)."""
    chart = tmp_path / "poolgate"
    shutil.copytree(CHART, chart, symlinks=True)
    (chart / "crds").unlink()
    (chart / "crds").symlink_to(reference_crds / "metacontroller")
    (chart / "files" / "metacontroller").unlink()
    (chart / "files" / "metacontroller").symlink_to(REPO / "metacontroller")
    sources = crd_sources(reference_crds / "metacontroller")
    crds = of_kind(render("--include-crds", chart=chart), "CustomResourceDefinition")
    assert sorted(crd["metadata"]["name"] for crd in crds) == sorted(sources) and len(crds) == 3


def test_packaged_chart_carries_the_linked_files(tmp_path):
    helm("package", str(CHART), "-d", str(tmp_path))
    with tarfile.open(next(tmp_path.glob("poolgate-*.tgz"))) as archive:
        names = set(archive.getnames())
    for path in sorted((REPO / "crds").glob("*.yaml")):
        assert f"poolgate/crds/{path.name}" in names
    for path in CONTROLLERS:
        assert f"poolgate/files/metacontroller/{path.name}" in names


def granted_rights(role: dict) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every right a ClusterRole grants."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def hook_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects if "helm.sh/hook" in o["metadata"].get("annotations", {})]


def test_uninstall_hook_removes_every_controller_and_their_finalizers_with_just_the_rights_it_needs(rendered):
    hooks = hook_objects(rendered)
    assert sorted(o["kind"] for o in hooks) == ["ClusterRole", "ClusterRoleBinding", "Job", "ServiceAccount"]
    for obj in hooks:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        # Helm creates hooks by ascending weight: the Job's rights exist before it starts
        assert int(annotations["helm.sh/hook-weight"]) == (0 if obj["kind"] == "Job" else -10)
    job = of_kind(hooks, "Job")[0]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/poolgate/poolgate:0.1.0"
    assert container["command"] == ["python", "-m", "hooks.uninstall"]
    args = build_parser().parse_args(container["args"])
    controllers = [yaml.safe_load(path.read_text()) for path in CONTROLLERS]
    assert sorted(args.controller) == sorted(c["metadata"]["name"] for c in controllers)
    watched = {
        Resource(r["apiVersion"].split("/")[0], r["apiVersion"].split("/")[1], r["resource"])
        for c in controllers
        for r in c["spec"]["resources"]
    }
    assert set(args.resource) == watched
    role = of_kind(hooks, "ClusterRole")[0]
    binding = of_kind(hooks, "ClusterRoleBinding")[0]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "poolgate-system"}
    ]
    granted = granted_rights(role)
    needed = {(r.group, r.plural, verb) for r in watched for verb in ("list", "patch")}
    needed |= {("metacontroller.k8s.io", "decoratorcontrollers", verb) for verb in ("get", "delete")}
    assert granted == needed
    controller_rule = next(r for r in role["rules"] if r["resources"] == ["decoratorcontrollers"])
    assert sorted(controller_rule["resourceNames"]) == sorted(args.controller)
    assert not hook_objects(render("--set", "uninstall.removeFinalizers=false"))


def test_metacontroller_may_set_owner_references_to_every_parent_with_attachments(rendered):
    """With OwnerReferencesPermissionEnforcement, blockOwnerDeletion on an attachment needs `update` on its
    parent's finalizers subresource."""
    role = next(r for r in of_kind(rendered, "ClusterRole") if r["metadata"]["name"] == "poolgate-metacontroller")
    granted = granted_rights(role)
    parents = {
        (resource["apiVersion"].split("/")[0], resource["resource"])
        for controller in (yaml.safe_load(path.read_text()) for path in CONTROLLERS)
        if controller["spec"].get("attachments")
        for resource in controller["spec"]["resources"]
    }
    assert parents == {("gateway.networking.k8s.io", "gateways"), ("inference.networking.k8s.io", "inferencepools")}
    for group, resource in parents:
        assert (group, f"{resource}/finalizers", "update") in granted


def test_envoy_gateway_controllers_render_only_when_enabled_with_the_rights_they_need(schemas, tmp_path):
    """Off by default, so users of poolgate's own Gateways get exactly what they had; on, the three controllers of
    metacontroller/envoy-gateway/, Metacontroller's rights over their attachments, their removal at uninstall, and
    the controllerName in the hooks' settings."""
    default = render()
    role = next(r for r in of_kind(default, "ClusterRole") if r["metadata"]["name"] == "poolgate-metacontroller")
    assert not any("gateway.envoyproxy.io" in rule["apiGroups"] for rule in role["rules"])
    assert len(of_kind(default, "DecoratorController")) == len(CONTROLLERS)

    enabled = render(
        "--set",
        "envoyGateway.enabled=true",
        "--set",
        "envoyGateway.controllerName=example.com/eg",
        "--set",
        "envoyGateway.atUserGateway=true",
    )
    for obj in enabled:
        schemas.validate(obj)
    sources = [yaml.safe_load(path.read_text()) for path in CONTROLLERS + EG_CONTROLLERS]
    rendered = {c["metadata"]["name"]: c for c in of_kind(enabled, "DecoratorController")}
    assert sorted(rendered) == sorted(c["metadata"]["name"] for c in sources)
    role = next(r for r in of_kind(enabled, "ClusterRole") if r["metadata"]["name"] == "poolgate-metacontroller")
    granted = granted_rights(role)
    for controller in (yaml.safe_load(path.read_text()) for path in EG_CONTROLLERS):
        for attachment in controller["spec"]["attachments"]:
            group = attachment["apiVersion"].rpartition("/")[0]
            for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
                assert (group, attachment["resource"], verb) in granted, (attachment, verb)
        for parent in controller["spec"]["resources"]:
            group = parent["apiVersion"].split("/")[0]
            assert (group, f"{parent['resource']}/finalizers", "update") in granted
            assert (group, f"{parent['resource']}/status", "update") in granted
    job = of_kind(hook_objects(enabled), "Job")[0]
    args = build_parser().parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert sorted(args.controller) == sorted(rendered)
    config_map = next(c for c in of_kind(enabled, "ConfigMap") if c["metadata"]["name"] == "poolgate-hooks")
    path = tmp_path / "settings.yaml"
    path.write_text(config_map["data"]["settings.yaml"])
    settings = load_settings(path)
    assert (settings.envoy_gateway_controller_name, settings.envoy_gateway_at_user_gateway) == ("example.com/eg", True)
