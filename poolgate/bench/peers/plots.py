"""PNG plot of the peers benchmark: per shape, TTFT p90 and prefix hit rate of each system side by side (bars;
matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_plot(rows: Sequence[dict], directory: str | Path) -> Path:
    """Write `peers.png` into `directory`; returns the file written."""
    from poolgate.bench.report import new_figure, save_figure

    shapes = list(dict.fromkeys(row["shape"] for row in rows))
    systems = list(dict.fromkeys(row["system"] for row in rows))
    by_case = {(row["shape"], row["system"]): row for row in rows}
    figure, (latency, hits) = new_figure(2, 1, figsize=(max(8, 1.6 * len(shapes) + 3), 7))
    width = 0.8 / len(systems)
    for index, system in enumerate(systems):
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(shapes))]
        cases = [by_case.get((shape, system), {}) for shape in shapes]
        latency.bar(positions, [case.get("ttft_p90_s") or 0 for case in cases], width, label=system)
        hits.bar(positions, [case.get("prefix_hit_rate") or 0 for case in cases], width, label=system)
    for axes in (latency, hits):
        axes.set_xticks(range(len(shapes)), shapes, fontsize="small")
        axes.grid(True, axis="y", which="both", alpha=0.3)
    load = rows[0]["load"] if rows else 0
    latency.set(
        title=f"TTFT p90 at {load:g} of fleet capacity (wall clock)", ylabel="seconds (log scale)", yscale="log"
    )
    hits.set(title="prefix-cache hit rate (the pods' own counters)", ylabel="hits / queries", ylim=(0, 1))
    latency.legend(fontsize="small")
    return save_figure(figure, Path(directory) / "peers.png", dpi=110)
