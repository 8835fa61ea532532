"""Shared output of the benchmarks: a rich table of rows, and the rows as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table


def output_console() -> Console:
    """The console the benchmarks print their tables to: stdout, the terminal's width, or 200 columns for a file or
    a pipe (so that wide tables are not cut)."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_table(title: str, rows: Iterable[dict], columns: Sequence[str], console: Console | None = None) -> None:
    """Print the given columns of the rows as a table ("-" where a row has no such value)."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(
            column,
            justify="right"
            if column not in ("benchmark", "profile", "picker", "workload", "mode", "scenario")
            else "left",
        )
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row[c]) for c in columns))
    (console or output_console()).print(table)


def new_figure(*args, **kwargs):
    """`matplotlib.pyplot.subplots(*args, **kwargs)` drawn off-screen (Agg backend): (figure, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(figure, path: str | Path, dpi: int = 120) -> Path:
    """Lay out the figure, write it as a PNG (creating the directory) and release it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def write_json(path: str | Path, rows: list[dict]) -> None:
    """Write the rows as a JSON list."""
    Path(path).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
