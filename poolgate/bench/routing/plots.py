"""PNG plots of the routing benchmark: per workload, TTFT p90 and output throughput against load, one line per
picker (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from poolgate.bench.routing.pickers import ORACLE, POOLED

BOUND_STYLES = {ORACLE: {"linestyle": "--", "color": "black"}, POOLED: {"linestyle": ":", "color": "black"}}


def write_plots(rows: Sequence[dict], directory: str | Path) -> list[Path]:
    """Write one `routing-<workload>.png` per workload into `directory`; returns the files written."""
    from poolgate.bench.report import new_figure, save_figure

    written = []
    for workload in dict.fromkeys(row["workload"] for row in rows):
        mine = [row for row in rows if row["workload"] == workload]
        figure, (latency, throughput) = new_figure(1, 2, figsize=(11, 4.2))
        for picker in dict.fromkeys(row["picker"] for row in mine):
            points = sorted(
                (row["load"], row["ttft_p90_s"], row["output_tokens_per_s"]) for row in mine if row["picker"] == picker
            )
            style = BOUND_STYLES.get(picker, {"marker": "o"})
            latency.plot(
                [p[0] for p in points if p[1] is not None],
                [p[1] for p in points if p[1] is not None],
                label=picker,
                **style,
            )
            throughput.plot([p[0] for p in points], [p[2] for p in points], label=picker, **style)
        latency.set(
            title=f"{workload}: TTFT p90",
            xlabel="load (fraction of fleet capacity)",
            ylabel="seconds (log scale)",
            yscale="log",
        )
        throughput.set(
            title=f"{workload}: output throughput",
            xlabel="load (fraction of fleet capacity)",
            ylabel="output tokens / s",
        )
        for axes in (latency, throughput):
            axes.grid(True, which="both", alpha=0.3)
        latency.legend(fontsize="small")
        written.append(save_figure(figure, Path(directory) / f"routing-{workload}.png", dpi=110))
    return written
