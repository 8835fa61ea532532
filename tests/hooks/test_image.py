"""The image, checked without building it (images/build.sh builds it; slow, needs root and buildah): the Dockerfile
installs every package the console script imports and starts `poolgate`; versions agree between pyproject.toml, the
chart's appVersion (its default image tag), the hooks' default image and the release workflow."""

from __future__ import annotations

import re
import tomllib

import yaml

from hooks.settings import HookSettings
from poolgate import __version__
from tests.conftest import REPO


def test_dockerfile_copies_every_package_and_runs_poolgate():
    dockerfile = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    assert copied == packages
    assert 'ENTRYPOINT ["poolgate"]' in dockerfile and "USER 65532:65532" in dockerfile
    assert project["project"]["scripts"]["poolgate"] == "poolgate.cli:main"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_versions_agree_and_the_chart_defaults_to_the_image_of_its_app_version():
    chart = yaml.safe_load((REPO / "helm" / "poolgate" / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert chart["appVersion"] == project["project"]["version"] == __version__
    assert HookSettings().poolgate_image == f"ghcr.io/poolgate/poolgate:{__version__}"
    values = yaml.safe_load((REPO / "helm" / "poolgate" / "values.yaml").read_text())
    assert values["image"] == {"repository": "ghcr.io/poolgate/poolgate", "tag": "", "pullPolicy": "IfNotPresent"}


def test_release_workflow_publishes_that_image_from_the_dockerfile():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as true
    steps = workflow["jobs"]["image"]["steps"]
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["context"] == "." and build["with"]["push"] is True
    meta = next(s for s in steps if s.get("uses", "").startswith("docker/metadata-action@"))
    assert meta["with"]["images"] == "ghcr.io/poolgate/poolgate"
    assert workflow["permissions"]["packages"] == "write"
