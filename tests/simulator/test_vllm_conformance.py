"""The simulator against a captured real vLLM 0.32 (data/): the /metrics series the picker reads (names, types,
labels, what the picker makes of them) and the KV-event wire format (ZMQ frames, msgpack bytes, event fields)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import zmq
from prometheus_client import generate_latest

from e2e.vllm.tiny_model import train_tokenizer
from poolgate.up.processes import free_port
from simulator import Prompt, ServerConfig, ServerModel, VirtualClock
from simulator.kvevents import KVEventPublisher, all_blocks_cleared, block_stored, decode_batch, encode_batch
from simulator.metrics import registry_for
from tests.support.vllm_conformance import VLLM, event_differences, metrics_differences, picker_reading

DATA = Path(__file__).parent / "data"
METRICS = (DATA / "vllm-0.32-cpu-metrics.txt").read_text()
_ENTRY = re.compile(r"seq=(\d+) payload_len=(\d+) payload_hex_prefix=([0-9a-f]+)\ndecoded=(.*)")
# The captured vLLM: blocks of 128 tokens, no LoRA.
CAPTURED = ServerConfig(model="tiny", block_size=128, num_gpu_blocks=8192, max_loras=0)


def simulator_metrics(config: ServerConfig) -> str:
    return generate_latest(registry_for(ServerModel(VirtualClock(), config, name="sim"))).decode()


def captured_messages() -> list[tuple[int, int, bytes, list]]:
    """(sequence, payload length, payload's first bytes, decoded payload) of every complete captured message."""
    out = []
    for match in _ENTRY.finditer((DATA / "vllm-0.32-cpu-kv-events.txt").read_text()):
        try:
            decoded = json.loads(match[4])
        except json.JSONDecodeError:
            continue  # the capture's last line is cut
        out.append((int(match[1]), int(match[2]), bytes.fromhex(match[3]), decoded))
    return out


def test_the_simulators_metrics_show_what_vllm_shows_for_everything_the_picker_reads():
    assert metrics_differences(simulator_metrics(CAPTURED), METRICS) == []
    real, simulated = picker_reading(METRICS), picker_reading(simulator_metrics(CAPTURED))
    assert (real.block_size, real.num_gpu_blocks) == (128, 8192) == (simulated.block_size, simulated.num_gpu_blocks)
    assert (
        (real.waiting, real.running, real.kv_usage)
        == (0, 0, 0.0)
        == (
            simulated.waiting,
            simulated.running,
            simulated.kv_usage,
        )
    )


@pytest.mark.parametrize("name", [n for n in VLLM.names() if f"\n{n}{{" in METRICS])
def test_the_check_fails_when_the_simulator_drops_or_renames_a_series_the_picker_reads(name):
    text = simulator_metrics(CAPTURED)
    dropped = "\n".join(line for line in text.splitlines() if name not in line)
    assert f"the simulator lacks {name}" in metrics_differences(dropped, METRICS)
    renamed = text.replace(f"{name}{{", f"{name}_renamed{{").replace(f" {name} ", f" {name}_renamed ")
    assert f"the simulator lacks {name}" in metrics_differences(renamed, METRICS)


def test_the_simulators_kv_event_encoding_reproduces_vllms_bytes():
    messages = captured_messages()
    assert len(messages) >= 5
    for _sequence, length, prefix, (timestamp, events, rank) in messages:
        rebuilt = [
            block_stored(
                e["block_hashes"], e["parent_block_hash"], e["token_ids"], e["block_size"], e["lora_id"], e["lora_name"]
            )
            for e in events
        ]
        assert [event_differences(mine, theirs) for mine, theirs in zip(rebuilt, events)] == [[]] * len(events)
        assert rebuilt == events
        payload = encode_batch(rebuilt, timestamp, rank)
        assert len(payload) == length and payload.startswith(prefix)
        assert decode_batch(payload) == (timestamp, events, rank)


@pytest.fixture
def subscriber():
    """A ZMQ SUB socket bound on loopback (the simulator connects to it, as vLLM does to a non-`*` endpoint)."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    port = free_port()
    socket.bind(f"tcp://127.0.0.1:{port}")
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    yield socket, f"tcp://127.0.0.1:{port}"
    socket.close(linger=0)


def connect(publisher: KVEventPublisher, socket) -> list[bytes]:
    """Publish AllBlocksCleared until the subscriber receives one (a PUB that connects drops what it sends before
    the connection is up); return that message's frames."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        publisher.publish([all_blocks_cleared()], timestamp=1.5)
        try:
            return socket.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            time.sleep(0.02)
    raise TimeoutError("the subscriber got nothing in 10 s")


def test_a_publisher_sends_three_frames_numbered_per_message(subscriber):
    socket, endpoint = subscriber
    publisher = KVEventPublisher(endpoint, "kv@sim@tiny")
    try:
        topic, sequence, payload = connect(publisher, socket)
        assert topic == b"kv@sim@tiny" and len(sequence) == 8
        assert int.from_bytes(sequence, "big") < publisher.sequence
        assert decode_batch(payload) == (1.5, [{"type": "AllBlocksCleared"}], 0)
        publisher.publish([all_blocks_cleared()])
        while (frames := socket.recv_multipart())[1] != (publisher.sequence - 1).to_bytes(8, "big"):
            pass  # the AllBlocksCleared sent while connecting
        assert frames[0] == b"kv@sim@tiny"
    finally:
        publisher.close()


def test_the_simulator_publishes_stored_and_removed_blocks_with_the_tokenizers_ids(subscriber, tmp_path):
    socket, endpoint = subscriber
    tokenizer = train_tokenizer()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    config = ServerConfig(
        model="tiny", block_size=16, num_gpu_blocks=12, tokenizer=str(tmp_path), kv_events_endpoint=endpoint
    )
    clock = VirtualClock()
    server = ServerModel(clock, config, name="sim")
    words = "kalo mine rusa tovi zepo quda fegi hoju " * 8  # 105 tokens: 6 full blocks
    prefix = tokenizer.encode(words, add_special_tokens=False).ids
    try:
        connect(server.kv_events, socket)
        first = server.submit(Prompt.from_text(words), max_tokens=1)
        clock.run_until_idle()
        _, stored, _ = decode_batch(_next_payload(socket))
        assert first.prompt_tokens == len(prefix)
        assert [e["type"] for e in stored] == ["BlockStored"]
        blocks = len(prefix) // 16
        assert len(stored[0]["block_hashes"]) == blocks and stored[0]["parent_block_hash"] is None
        assert stored[0]["token_ids"] == prefix[: blocks * 16]

        # 12 blocks: another long prompt evicts the first one's cached blocks
        server.submit(Prompt.from_text("zeze " * 120), max_tokens=1)  # 122 tokens, 8 blocks
        clock.run_until_idle()
        _, events, _ = decode_batch(_next_payload(socket))
        assert events[0]["type"] == "BlockRemoved" and set(events[0]["block_hashes"]) <= set(stored[0]["block_hashes"])
        assert events[-1]["type"] == "BlockStored"
    finally:
        server.close()


def _next_payload(socket) -> bytes:
    while True:
        topic, _sequence, payload = socket.recv_multipart()
        assert topic == b"kv@sim@tiny"
        _, events, _ = decode_batch(payload)
        if events != [{"type": "AllBlocksCleared"}]:
            return payload


def test_a_pod_binding_every_interface_binds_its_own_address_on_loopback(tmp_path):
    """`--kv-events-endpoint tcp://*:PORT` on pods side by side on loopback: each binds its listen address."""
    from poolgate.cli import build_parser
    from simulator.cli import config_from_args

    tokenizer = train_tokenizer()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    port = free_port()
    arguments = ["sim", "--tokenizer", str(tmp_path), "--kv-events-endpoint", f"tcp://*:{port}"]
    servers = []
    try:
        for address in ("127.0.0.21", "127.0.0.22"):
            args = build_parser().parse_args([*arguments, "--listen", f"{address}:8000"])
            config = config_from_args(args)
            assert config.kv_events_interface == address
            servers.append(ServerModel(VirtualClock(), config, name=address))  # the same port twice: no clash
        everywhere = config_from_args(build_parser().parse_args([*arguments, "--listen", "0.0.0.0:8000"]))
        assert everywhere.kv_events_interface is None
    finally:
        for server in servers:
            server.close()
