"""Structured logging shared by every poolgate process: one JSON object per line on stderr."""

from __future__ import annotations

import logging
import sys
import time

import orjson

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _RESERVED)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info", json_format: bool = True) -> None:
    """Configure the root logger once for a poolgate process (JSON lines, or plain text for humans)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_arguments(parser, default_level: str | None = "info", default_format: str | None = "json") -> None:
    """Add the shared `--log-level` and `--log-format` options to a subcommand's parser (a None default lets the
    subcommand tell whether they were given)."""
    parser.add_argument(
        "--log-level",
        default=default_level,
        choices=["debug", "info", "warning", "error"],
        help="minimum level of log lines (default: info)",
    )
    parser.add_argument(
        "--log-format",
        default=default_format,
        choices=["json", "text"],
        help="json: one JSON object per line (default); text: human-readable lines",
    )
