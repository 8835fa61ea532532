"""Pool state from a YAML file of Kubernetes objects, reloaded when it changes (how `poolgate up` feeds its pickers).

The file holds InferencePools, Pods (with `status.podIP` and the Ready condition), InferenceObjectives,
InferenceModelRewrites and LoRA ConfigMaps, in any mix of YAML documents and `kind: List`. The directory is watched
(so atomic replaces and ConfigMap-style symlink swaps are seen); on every change the file is read again and, if its
contents changed, a new view is published. A file that does not parse, or holds an invalid object, is logged with
every problem and the last good view stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import watchfiles

from picker.discovery.view import PickerView, build_view, is_adapters_configmap
from poolgate.api import InvalidObjects
from poolgate.api.load import parse_objects, read_documents

log = logging.getLogger("poolgate.picker.discovery")

Publish = Callable[[PickerView], Awaitable[None]]


def load_view(path: str | Path, pools: Sequence[str] | None) -> PickerView:
    """Read the objects file into a view; raises InvalidObjects listing every problem."""
    raws = read_documents(path)
    configmaps = [raw for _, raw in raws if isinstance(raw, dict) and is_adapters_configmap(raw)]
    objects, problems = parse_objects(raws)
    if problems:
        raise InvalidObjects(problems)
    return build_view(objects, configmaps, pools)


class ObjectsFile:
    """Publishes the view of an objects file now and after every change (see the module docstring)."""

    def __init__(self, path: str | Path, pools: Sequence[str] | None = None, debounce_ms: int = 50) -> None:
        self.path = Path(path)
        self.pools = list(pools) if pools is not None else None
        self.debounce_ms = debounce_ms
        self._contents: bytes | None = None

    def first_view(self) -> PickerView:
        """The initial view; raises InvalidObjects (or OSError) when the file cannot be used."""
        self._contents = self.path.read_bytes()
        return load_view(self.path, self.pools)

    async def watch(self, publish: Publish, stop=None) -> None:
        """Publish a new view whenever the file's contents change, until `stop` (an asyncio.Event) is set."""
        directory = self.path.resolve().parent if not self.path.is_symlink() else self.path.parent
        async for _ in watchfiles.awatch(
            directory, watch_filter=None, debounce=self.debounce_ms, step=10, stop_event=stop, recursive=False
        ):
            await self.reload(publish)

    async def reload(self, publish: Publish) -> bool:
        """Read the file again and publish its view if the contents changed and are valid; returns whether it did."""
        try:
            contents = self.path.read_bytes()
        except OSError as error:
            log.warning(
                "objects file unreadable; keeping the last good state",
                extra={"path": str(self.path), "error": str(error)},
            )
            return False
        if contents == self._contents:
            return False
        try:
            view = load_view(self.path, self.pools)
        except InvalidObjects as error:
            self._contents = contents
            log.warning(
                "objects file is invalid; keeping the last good state",
                extra={"path": str(self.path), "problems": [str(problem) for problem in error.problems]},
            )
            return False
        self._contents = contents
        log.info("objects file reloaded", extra={"path": str(self.path)})
        await publish(view)
        return True
