"""The supervisor starts children wave by wave: a child of a later wave starts only once every child of the earlier
waves answers (as a picker should first scrape model servers that are up), with real processes on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

from poolgate.up.processes import Spec, Supervisor, free_port

HOST = "127.0.0.1"

# listens on argv[1] after argv[2] seconds, until killed
LATE_SERVER = """
import socket, sys, time
time.sleep(float(sys.argv[2]))
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    server.accept()
"""

# writes whether argv[1] accepts a connection at its start into argv[3], then listens on argv[2]
PROBE = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
    seen = "up"
except OSError:
    seen = "down"
open(sys.argv[3], "w").write(seen)
server = socket.create_server(("127.0.0.1", int(sys.argv[2])))
while True:
    server.accept()
"""


def test_a_later_wave_starts_only_once_the_earlier_wave_answers(tmp_path: Path):
    server_port, probe_port, seen = free_port(HOST), free_port(HOST), tmp_path / "seen"
    supervisor = Supervisor(tmp_path / "logs")
    desired = {
        "probe": Spec(
            (sys.executable, "-c", PROBE, str(server_port), str(probe_port), str(seen)), (HOST, probe_port), wave=1
        ),
        "server": Spec((sys.executable, "-c", LATE_SERVER, str(server_port), "0.5"), (HOST, server_port)),
    }
    try:
        started = supervisor.reconcile(desired, ready_timeout=20)
        assert sorted(started) == ["probe", "server"]
        assert seen.read_text() == "up"  # the probe, listed first, still started after the server answered
    finally:
        supervisor.stop_all()
