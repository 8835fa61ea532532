"""The drop-in tables of docs/picker.md and the plugin table of docs/scheduling.md say what the code does: every
upstream flag (llm-d router v0.10) has a row, each flag poolgate accepts without acting on it with upstream's default
and poolgate's reason; every plugin type the registry knows has a row in the plugin reference, and every type the
upstream configs use has one in the drop-in table."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from picker.flags import UNUSED_FLAGS
from picker.scheduling.registry import plugin_class, plugin_types
from tests.support.upstream import UPSTREAM_CONFIG_FILES

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"

# The flags of llm-d router v0.10's endpoint picker (pkg/epp/server/options.go and its logging options)
UPSTREAM_FLAGS = (
    "--grpc-port",
    "--grpc-health-port",
    "--metrics-port",
    "--pool-name",
    "--pool-namespace",
    "--pool-group",
    "--config-file",
    "--config-text",
    "--endpoint-selector",
    "--endpoint-target-ports",
    "--refresh-metrics-interval",
    "--refresh-prometheus-metrics-interval",
    "--metrics-staleness-threshold",
    "--secure-serving",
    "--cert-path",
    "--enable-cert-reload",
    "--tls-min-version",
    "--tls-cipher-suites",
    "--metrics-endpoint-auth",
    "--metrics-cert-dir",
    "--metrics-client-ca-file",
    "--drain-timeout",
    "--grpc-max-recv-msg-size",
    "--grpc-max-send-msg-size",
    "--disable-endpoint-subset-filter",
    "--emit-endpoint-scores",
    "--ha-enable-leader-election",
    "--health-checking",
    "--enable-pprof",
    "--enable-grpc-stream-metrics",
    "--tracing",
    "--allow-experimental-plugins",
    "--total-queued-requests-metric",
    "--total-running-requests-metric",
    "--kv-cache-usage-percentage-metric",
    "--lora-info-metric",
    "--cache-info-metric",
    "-v",
    "--zap-encoder",
    "--zap-log-level",
)


def table(document: str, heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table under `heading` in a docs/ file, header row excluded."""
    text = (DOCS / document).read_text()
    start = text.index(f"\n{heading}\n")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]  # the header and its |---| line


def names(cell: str) -> set[str]:
    """The backquoted names of a table cell."""
    return set(re.findall(r"`([^`]+)`", cell))


def test_every_upstream_flag_has_a_row_and_the_unused_ones_say_default_and_reason():
    rows = table("picker.md", "### Upstream flags")
    listed = set().union(*(names(row[0]) for row in rows))
    assert set(UPSTREAM_FLAGS) <= listed, set(UPSTREAM_FLAGS) - listed
    by_flag = {row[0]: row for row in rows}
    for unused in UNUSED_FLAGS:
        _, default, poolgate = by_flag[f"`{unused.flag}`"]
        assert poolgate.startswith("accepted, not acted on: ") and unused.reason in poolgate, unused.flag
        if isinstance(unused.default, bool):
            assert default == str(unused.default).lower(), unused.flag
        elif unused.default:
            assert default == f"`{unused.default}`", unused.flag


def test_every_registered_plugin_type_is_in_the_plugin_reference():
    documented = set().union(*(names(row[0]) for row in table("scheduling.md", "## Plugins")))
    builtin = {name for name in plugin_types() if plugin_class(name, name).__module__.startswith("picker.")}
    assert builtin <= documented, builtin - documented  # (tests register plugins of their own)


def test_every_plugin_type_of_the_upstream_configs_is_in_the_drop_in_table():
    documented = set().union(*(names(row[0]) for row in table("picker.md", "## Upstream plugin types")))
    used = {
        plugin["type"] for _, path in UPSTREAM_CONFIG_FILES for plugin in yaml.safe_load(path.read_text())["plugins"]
    }
    assert used <= documented, used - documented
