"""The objects file as a pool-state source: first load, reloads on atomic replace and symlink swaps, broken files."""

import asyncio
import logging
import os
from pathlib import Path

import pytest

from picker.discovery.files import ObjectsFile
from poolgate.api import InvalidObjects

POOL = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  selector: {matchLabels: {app: pool}}
  targetPorts: [{number: 8000}]
"""


def pod(name: str, ip: str) -> str:
    return f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: pool}}}}
status: {{podIP: {ip}, conditions: [{{type: Ready, status: "True"}}]}}
"""


def replace_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class Views:
    """Collects published views; `next()` waits for the next one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    async def publish(self, view) -> None:
        self.queue.put_nowait(view)

    async def next(self, timeout: float = 5.0):
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def none_within(self, seconds: float) -> bool:
        await asyncio.sleep(seconds)
        return self.queue.empty()


def endpoints(view) -> list[str]:
    return [e.key for e in view.pools["default/pool"].endpoints]


async def test_reloads_on_atomic_replace_and_keeps_the_last_good_state_on_a_broken_file(tmp_path, caplog):
    path = tmp_path / "objects.yaml"
    path.write_text(POOL + pod("p0", "127.0.0.10"))
    source = ObjectsFile(path, ["default/pool"], debounce_ms=20)
    assert endpoints(source.first_view()) == ["127.0.0.10:8000"]
    views, stop = Views(), asyncio.Event()
    task = asyncio.create_task(source.watch(views.publish, stop))
    try:
        await asyncio.sleep(0.2)  # the watcher is up
        replace_atomically(path, POOL + pod("p0", "127.0.0.10") + pod("p1", "127.0.0.11"))
        assert endpoints(await views.next()) == ["127.0.0.10:8000", "127.0.0.11:8000"]

        with caplog.at_level(logging.WARNING, logger="poolgate.picker.discovery"):
            replace_atomically(path, POOL + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nstatus: 7\n")
            assert await views.none_within(0.5)
            replace_atomically(path, "key: [unclosed\n")
            assert await views.none_within(0.5)
        problems = [r for r in caplog.records if "objects file is invalid" in r.getMessage()]
        assert len(problems) == 2 and any("Pod default/bad" in p for p in problems[0].problems)

        replace_atomically(path, POOL)  # fixed: the pool lost its pods
        assert endpoints(await views.next()) == []
        path.write_text(POOL)  # rewritten with the same contents: nothing to publish
        assert await views.none_within(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_follows_a_configmap_style_symlink_swap(tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "v1").mkdir()
    (mount / "v1" / "objects.yaml").write_text(POOL + pod("p0", "127.0.0.10"))
    os.symlink("v1", mount / "..data")
    os.symlink("..data/objects.yaml", mount / "objects.yaml")
    source = ObjectsFile(mount / "objects.yaml", None, debounce_ms=20)
    assert endpoints(source.first_view()) == ["127.0.0.10:8000"]
    views, stop = Views(), asyncio.Event()
    task = asyncio.create_task(source.watch(views.publish, stop))
    try:
        await asyncio.sleep(0.2)
        (mount / "v2").mkdir()
        (mount / "v2" / "objects.yaml").write_text(POOL + pod("p9", "127.0.0.19"))
        os.symlink("v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")  # the one atomic rename a ConfigMap update does
        assert endpoints(await views.next()) == ["127.0.0.19:8000"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_an_unusable_file_at_start_is_an_error_naming_the_problem(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text(POOL.replace("targetPorts: [{number: 8000}]", "targetPorts: []"))
    with pytest.raises(InvalidObjects) as caught:
        ObjectsFile(path).first_view()
    assert "InferencePool default/pool" in str(caught.value) and "targetPorts" in str(caught.value)
    with pytest.raises(OSError):
        ObjectsFile(tmp_path / "missing.yaml").first_view()
