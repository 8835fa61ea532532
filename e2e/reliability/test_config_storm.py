"""100 rapid edits of the objects under load, applied through Stack.reload and through `poolgate up`'s file
watching: no request fails while Envoy reloads, and Envoy ends on the last edit."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
import yaml

from e2e.reliability.conftest import failures
from poolgate.load import faults
from poolgate.up.processes import POOLGATE, free_port
from tests.support.stacks import next_block

pytestmark = pytest.mark.xdist_group("reliability-storm")


def test_a_storm_of_reloads_loses_no_request_and_ends_on_the_last_edit(start_stack, report):
    stack = start_stack(*faults.storm_objects(0, 0))
    envoy = stack.child("envoy").popen.pid
    result = faults.config_storm(stack.url(), faults.reload_editor(stack.stack), edits=100, rate=30.0, settle=60.0)
    report(result)
    assert result.row["lost"] == 0, failures(result)
    assert result.row["recovered"], result.facts
    assert result.facts["converged_after_s"] < 2.0
    assert result.facts["keepalive_converged_s"] < 5.0  # kept-alive connections too, once drained
    assert stack.child("envoy").popen.pid == envoy  # reloaded in place, never restarted


def test_a_storm_of_file_edits_seen_by_poolgate_up_ends_on_the_last_edit(tmp_path, report):
    block = next_block()
    listener = f"127.{block}.2.1"
    path = tmp_path / "objects.yaml"
    port = free_port(listener)

    def write(generation: int) -> None:
        text = yaml.safe_dump_all(faults.storm_objects(generation, port), sort_keys=False)
        path.write_text(text)

    write(0)
    up = subprocess.Popen(
        [
            *POOLGATE,
            "up",
            "-f",
            str(path),
            "--state-dir",
            str(tmp_path / "state"),
            "--listen-address",
            listener,
            "--address-block",
            str(block),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = up.stdout.readline()
        match = re.match(r"Gateway default/gw: (http://\S+)$", line.strip())
        assert match, line

        def edit(generation: int) -> None:  # as fast as an editor or a script can write
            write(generation)
            time.sleep(0.01)

        result = faults.config_storm(
            match.group(1), edit, edits=100, rate=30.0, scenario="config-storm-watch", settle=60.0
        )  # settle: a deadline for the watcher's last reload, not a measure of its speed
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    report(result)
    assert result.row["lost"] == 0, failures(result)
    assert result.row["recovered"], result.facts  # the debounced watcher applied the last edit
