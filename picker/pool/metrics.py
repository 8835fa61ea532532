"""Engine-specific metric names and their mapping onto the picker's endpoint metrics.

A pod says which inference engine it runs with the label `llm-d.ai/engine-type` (the label the llm-d router's
metrics extractor reads; its older Gateway API Inference Extension spelling `inference.networking.k8s.io/engine-type`
is read when the first is absent). Values are the upstream engine names `vllm`, `sglang` and `trtllm-serve`;
a pod without the label, or with an engine name poolgate does not know, is read as vLLM.

The exchange format is an iterable of `prometheus_client.samples.Sample` (name, labels, value): the simulator hands
its samples over directly, `parse_metrics_text` reads them out of `/metrics` text. `read_samples` turns them into an
`EngineReading`; it needs the three core signals (waiting, running, KV-cache use) and treats cache geometry and LoRA
state as optional. The scraper reads `/metrics` bytes straight into a reading (`read_metrics_text`): the same mapping,
with what each distinct line gives a reading remembered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote

from prometheus_client.samples import Sample

ENGINE_LABEL = "llm-d.ai/engine-type"
LEGACY_ENGINE_LABEL = "inference.networking.k8s.io/engine-type"
DEFAULT_ENGINE = "vllm"


class MetricsError(ValueError):
    """A metrics payload that cannot be read: unparsable text or a missing core metric."""


# Where each mapped metric's value goes while a reading is put together (`EngineMetricNames.slot_of`): the core
# signals, the cache geometry (info labels or plain gauges), LoRA, then the KV-usage names in their order of preference.
_WAITING, _RUNNING, _CACHE_INFO, _BLOCK_SIZE, _NUM_BLOCKS, _LORA, _KV = range(7)


@dataclass(frozen=True, slots=True)
class EngineMetricNames:
    """The metric names one engine exposes for the signals the picker reads."""

    engine: str
    waiting: str
    running: str
    kv_usage: tuple[str, ...]  # the first name present wins (vLLM renamed its gauge)
    cache_info: str | None = None  # an info gauge whose labels carry the cache geometry
    block_size_label: str = "block_size"
    num_blocks_label: str = "num_gpu_blocks"
    block_size_gauge: str | None = None  # geometry as plain gauges instead of info labels
    num_blocks_gauge: str | None = None
    lora_info: str | None = None
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    slot_of: dict[str, int] = field(init=False, repr=False, compare=False)  # a name -> its slot in a reading
    sample_lines: re.Pattern[bytes] = field(init=False, repr=False, compare=False)  # see `_sample_lines`
    first_sample_line: re.Pattern[bytes] = field(init=False, repr=False, compare=False)
    line_values: dict[bytes, tuple[int, Any]] = field(init=False, repr=False, compare=False)  # see `read_metrics_text`

    def __post_init__(self) -> None:
        optional = (self.cache_info, self.block_size_gauge, self.num_blocks_gauge, self.lora_info)
        names = (self.waiting, self.running, *self.kv_usage, *(name for name in optional if name))
        object.__setattr__(self, "_names", names)
        slots = {self.cache_info: _CACHE_INFO, self.block_size_gauge: _BLOCK_SIZE, self.num_blocks_gauge: _NUM_BLOCKS}
        slots |= {self.lora_info: _LORA, self.waiting: _WAITING, self.running: _RUNNING}
        slots |= {name: _KV + rank for rank, name in enumerate(self.kv_usage)}
        object.__setattr__(self, "slot_of", {name: slot for name, slot in slots.items() if name})
        sample_lines, first_sample_line = _sample_line_patterns(names)
        object.__setattr__(self, "sample_lines", sample_lines)
        object.__setattr__(self, "first_sample_line", first_sample_line)
        object.__setattr__(self, "line_values", {})

    def names(self) -> tuple[str, ...]:
        """Every metric name this engine's mapping reads."""
        return self._names


def _sample_line_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """The pattern of a sample line of one of `names` after a newline (labels or the value follow the name: a longer
    name that begins alike is another metric), and of one at the start of the text. The names' common prefix (such
    as `vllm:`) is written once, so that the pattern begins with a literal the regex engine searches for fast."""
    encoded = [name.encode() for name in names]
    prefix = encoded[0]
    for name in encoded[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    rests = b"|".join(re.escape(name[len(prefix) :]) for name in sorted(encoded, key=len, reverse=True))
    line = re.escape(prefix) + rb"(?:" + rests + rb")[{ \t].*"  # `.` is anything but a newline
    return re.compile(rb"\n" + line), re.compile(line)


ENGINES: dict[str, EngineMetricNames] = {
    "vllm": EngineMetricNames(
        engine="vllm",
        waiting="vllm:num_requests_waiting",
        running="vllm:num_requests_running",
        kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        cache_info="vllm:cache_config_info",
        lora_info="vllm:lora_requests_info",
    ),
    "sglang": EngineMetricNames(
        engine="sglang",
        waiting="sglang:num_queue_reqs",
        running="sglang:num_running_reqs",
        kv_usage=("sglang:token_usage",),
        cache_info="sglang:cache_config_info",
        block_size_label="page_size",
        num_blocks_label="num_pages",
        block_size_gauge="sglang:page_size",
        num_blocks_gauge="sglang:num_pages",
    ),
    "trtllm-serve": EngineMetricNames(
        engine="trtllm-serve",
        waiting="trtllm_num_requests_waiting",
        running="trtllm_num_requests_running",
        kv_usage=("trtllm_kv_cache_utilization",),
        block_size_gauge="trtllm_kv_cache_tokens_per_block",
        num_blocks_gauge="trtllm_kv_cache_max_blocks",
    ),
}


def engine_name(labels: Mapping[str, str]) -> str:
    """Return the engine a pod's labels name (`llm-d.ai/engine-type`, then the legacy label), `vllm` if none."""
    name = labels.get(ENGINE_LABEL) or labels.get(LEGACY_ENGINE_LABEL) or DEFAULT_ENGINE
    return name if name in ENGINES else DEFAULT_ENGINE


@dataclass(frozen=True, slots=True)
class LoraState:
    """The LoRA adapters of one engine: slots and which adapters run or wait to be loaded."""

    max_lora: int
    running: frozenset[str]
    waiting: frozenset[str]


class EngineReading(NamedTuple):
    """One good reading of an engine's metrics; None means the engine did not report that signal. (A named tuple:
    the scraper makes one per changed answer, thousands a second, and a frozen dataclass costs 4x more to make.)"""

    waiting: int
    running: int
    kv_usage: float
    block_size: int | None = None
    num_gpu_blocks: int | None = None
    lora: LoraState | None = None


def read_samples(names: EngineMetricNames, samples: Iterable[Sample]) -> EngineReading:
    """Map an engine's samples onto an `EngineReading`; raises MetricsError when a core metric is missing or invalid.

    Gauges that appear more than once (several label sets) are read from their first series, except the vLLM
    LoRA info gauge whose value is a timestamp: its newest series wins.
    """
    slot_of = names.slot_of
    return _reading(
        names,
        [
            (slot, _slot_value(names, slot, sample))
            for sample in samples
            if (slot := slot_of.get(sample.name)) is not None
        ],
    )


def read_metrics_text(names: EngineMetricNames, text: bytes) -> EngineReading:
    """What `read_samples(names, parse_metrics_text(names, text))` reads, for the scraper: the same lines come back
    scrape after scrape and endpoint after endpoint (info gauges, queues of 0), so what each distinct line gives a
    reading is worked out once and remembered (per engine mapping)."""
    known = names.line_values
    entries = []
    for line in _sample_lines(names, text):
        entry = known.get(line)
        if entry is None:
            sample = _parse_line(names, line)
            slot = names.slot_of[sample.name]
            if len(known) >= _MEMO_SIZE:
                known.clear()
            entry = known[line] = (slot, _slot_value(names, slot, sample))
        entries.append(entry)
    return _reading(names, entries)


def parse_metrics_text(names: EngineMetricNames, text: str | bytes) -> list[Sample]:
    """Read the samples of the metrics an engine's mapping reads out of Prometheus text (str, or bytes as they came
    over HTTP), in the text's order; raises MetricsError when one of their lines is malformed. Lines of other metrics
    are not parsed."""
    body = text.encode() if isinstance(text, str) else text
    return [_parse_line(names, line) for line in _sample_lines(names, body)]


def _sample_lines(names: EngineMetricNames, body: bytes) -> list[bytes]:
    """The sample lines of the mapped metrics, each with the newline before it, in the text's order: one precompiled
    pattern per engine finds them all in one pass (`_sample_line_patterns`)."""
    lines = names.sample_lines.findall(body)
    first = names.first_sample_line.match(body)
    if first is not None:
        lines.insert(0, b"\n" + first.group())
    return lines


class _Refused(NamedTuple):
    """A value a reading cannot use (NaN, infinite, negative count): an error only if the reading picks its series."""

    reason: str


def _slot_value(names: EngineMetricNames, slot: int, sample: Sample) -> Any:
    """What a sample gives a reading at its slot: a count or a 0..1 fraction (or why it is refused), a cache geometry,
    a block size or count, or a LoRA state with its timestamp."""
    if slot in (_WAITING, _RUNNING):
        return _count(sample)
    if slot >= _KV:
        return _fraction(sample)
    if slot == _CACHE_INFO:
        labels = sample.labels
        return _positive_int(labels.get(names.block_size_label)), _positive_int(labels.get(names.num_blocks_label))
    if slot == _LORA:
        return sample.value, _lora_state(sample)
    return _positive_int(sample.value)


def _reading(names: EngineMetricNames, entries: Iterable[tuple[int, Any]]) -> EngineReading:
    """The reading of the values of an engine's series (slot, value), in their text order; raises MetricsError when
    a core metric is missing or refused."""
    values: list[Any] = [None] * (_KV + len(names.kv_usage))
    for slot, value in entries:
        if values[slot] is None or (slot == _LORA and value[0] >= values[_LORA][0]):  # the newest LoRA series wins
            values[slot] = value
    waiting, running, kv = values[_WAITING], values[_RUNNING], values[_KV]
    if kv is None:  # the preferred KV-usage name is absent: the first other one present
        kv = next((value for value in values[_KV + 1 :] if value is not None), None)
    if waiting is None or running is None or kv is None:
        missing = [name for name, value in ((names.waiting, waiting), (names.running, running)) if value is None]
        if kv is None:
            missing.append(" or ".join(names.kv_usage))
        raise MetricsError(f"{names.engine} metrics missing: {', '.join(missing)}")
    if _Refused in (type(waiting), type(running), type(kv)):
        raise MetricsError(next(value.reason for value in (waiting, running, kv) if type(value) is _Refused))
    block_size, num_blocks = values[_CACHE_INFO] or (None, None)
    lora = values[_LORA]
    return EngineReading(  # by position: a third cheaper than by keyword
        waiting,
        running,
        kv,
        values[_BLOCK_SIZE] if block_size is None else block_size,
        values[_NUM_BLOCKS] if num_blocks is None else num_blocks,
        None if lora is None else lora[1],
    )


_MEMO_SIZE = 4096  # the entries each of this module's memos holds at most (then it starts over)


def metrics_query(names: EngineMetricNames) -> str:
    """The query string that asks a prometheus-client `/metrics` for only the metrics an engine's mapping reads."""
    return "&".join(f"name%5B%5D={quote(name, safe='')}" for name in names.names())


_LABEL_BLOCK = re.compile(r'\{(?:[ \t]*[a-zA-Z_]\w*[ \t]*=[ \t]*"(?:[^"\\\n]|\\.)*"[ \t]*,?)*[ \t]*\}')
_LABEL = re.compile(r'([a-zA-Z_]\w*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")


def _parse_line(names: EngineMetricNames, raw: bytes) -> Sample:
    """One sample line of a mapped metric, with the newline before it: `name{label="value",...} value [timestamp]`."""
    line = raw[1:].decode("utf-8", errors="replace").rstrip("\r")
    name = next(name for name in names.names() if line.startswith(name) and line[len(name) : len(name) + 1] in "{ \t")
    at = len(name)
    labels: dict[str, str] = {}
    if line.startswith("{", at):
        end = line.rfind("}") + 1  # the value and timestamp after the labels hold no brace
        labels = _label_set(name, line[at:end])
        at = end
    fields = line[at:].split()
    if not 1 <= len(fields) <= 2 or not line[at : at + 1].isspace():
        raise MetricsError(f"unparsable {name} line: {line[:200]!r}")
    try:
        value = float(fields[0])
    except ValueError:
        raise MetricsError(f"{name} has an unparsable value {fields[0][:50]!r}") from None
    return Sample(name, labels, value)


_LABEL_SETS: dict[str, dict[str, str]] = {}


def _label_set(name: str, block: str) -> dict[str, str]:
    """The labels of a `{...}` block. An endpoint shows the same few label sets scrape after scrape (the long ones of
    info gauges too), so each distinct block is parsed once; the dicts are shared, never to be changed."""
    labels = _LABEL_SETS.get(block)
    if labels is None:
        if _LABEL_BLOCK.fullmatch(block) is None:
            raise MetricsError(f"unparsable {name} labels: {block[:200]!r}")
        if len(_LABEL_SETS) >= _MEMO_SIZE:
            _LABEL_SETS.clear()
        labels = _LABEL_SETS[block] = {
            label: _ESCAPE.sub(_unescape, value) if "\\" in value else value for label, value in _LABEL.findall(block)
        }
    return labels


def _unescape(match: re.Match[str]) -> str:
    return "\n" if match.group(1) == "n" else match.group(1)


def _count(sample: Sample) -> int | _Refused:
    value = float(sample.value)
    if not 0.0 <= value < math.inf:  # NaN, infinite or negative
        return _Refused(f"{sample.name} has an invalid value {sample.value!r}")
    return int(value)


def _fraction(sample: Sample) -> float | _Refused:
    """A 0..1 utilisation (values outside are clamped); NaN is refused rather than read as an empty cache."""
    value = float(sample.value)
    if 0.0 <= value <= 1.0:
        return value
    if value != value:
        return _Refused(f"{sample.name} has an invalid value {sample.value!r}")
    return 0.0 if value < 0.0 else 1.0


def _positive_int(text: str | float | None) -> int | None:
    try:
        value = int(float(text))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _adapters(csv: str | None) -> frozenset[str]:
    return frozenset(name.strip() for name in (csv or "").split(",") if name.strip())


_LORA_STATES: dict[tuple[str | None, str | None, str | None], LoraState] = {}


def _lora_state(sample: Sample) -> LoraState:
    """The LoRA state of an info sample's labels; the same few label values come back scrape after scrape, so each
    distinct triple is read once (like `_label_set`)."""
    labels = sample.labels
    key = (labels.get("max_lora"), labels.get("running_lora_adapters"), labels.get("waiting_lora_adapters"))
    state = _LORA_STATES.get(key)
    if state is None:
        if len(_LORA_STATES) >= _MEMO_SIZE:
            _LORA_STATES.clear()
        state = _LORA_STATES[key] = LoraState(
            max_lora=_positive_int(key[0]) or 0, running=_adapters(key[1]), waiting=_adapters(key[2])
        )
    return state
