"""Does the simulator show what real vLLM shows? Compares two /metrics texts for every series the picker reads
(picker.pool.metrics), and KV-event messages field by field."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from picker.pool.metrics import ENGINES, EngineReading, read_metrics_text
from simulator.kvevents import Event

VLLM = ENGINES["vllm"]
# The labels the picker reads, per series (picker/pool/metrics.py: cache geometry and LoRA state).
PICKER_LABELS = {
    VLLM.cache_info: {VLLM.block_size_label, VLLM.num_blocks_label},
    VLLM.lora_info: {"max_lora", "running_lora_adapters", "waiting_lora_adapters"},
}


def picker_series(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """The series of a /metrics text that the picker reads: name -> (type, label names)."""
    wanted = set(VLLM.names())
    series = {}
    for family in text_string_to_metric_families(text):
        if family.name in wanted and family.samples:
            labels = frozenset(label for sample in family.samples for label in sample.labels)
            series[family.name] = (family.type, labels)
    return series


def metrics_differences(simulator: str, vllm: str) -> list[str]:
    """What the simulator's /metrics text gets wrong against vLLM's, for the series the picker reads (empty: none).

    A series vLLM shows must be in the simulator's with the same type, every label the picker reads and no label
    vLLM lacks; the simulator must not show a picker series vLLM does not (such as a renamed one)."""
    real, simulated = picker_series(vllm), picker_series(simulator)
    problems = []
    for name, (kind, labels) in sorted(real.items()):
        if name not in simulated:
            problems.append(f"the simulator lacks {name}")
            continue
        sim_kind, sim_labels = simulated[name]
        if sim_kind != kind:
            problems.append(f"{name} is a {sim_kind} in the simulator, a {kind} in vLLM")
        if sim_labels - labels:
            problems.append(f"{name} has labels vLLM does not: {sorted(sim_labels - labels)}")
        if (PICKER_LABELS.get(name, set()) & labels) - sim_labels:
            problems.append(f"{name} lacks labels the picker reads: {sorted(PICKER_LABELS[name] - sim_labels)}")
    problems += [f"the simulator shows {name}, vLLM does not" for name in sorted(set(simulated) - set(real))]
    return problems


def picker_reading(text: str) -> EngineReading:
    """What the picker reads from a /metrics text."""
    return read_metrics_text(VLLM, text.encode())


def event_differences(simulator: Event, vllm: Event) -> list[str]:
    """How a simulator KV event differs from a vLLM event of the same type: field names and order, value types."""
    problems = []
    if list(simulator) != list(vllm):
        problems.append(f"{vllm.get('type')}: fields {list(simulator)} in the simulator, {list(vllm)} in vLLM")
    for field in set(simulator) & set(vllm):
        real, simulated = vllm[field], simulator[field]
        if real is not None and simulated is not None and type(real) is not type(simulated):
            problems.append(f"{vllm['type']}.{field}: {type(simulated).__name__}, vLLM {type(real).__name__}")
    return problems
