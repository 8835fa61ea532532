"""The simulator against a live vLLM serving the tiny model: the /metrics series the picker reads, the OpenAI
response shapes, and the KV-event stream (same frames, fields and token ids for the same prompt)."""

from __future__ import annotations

import uuid

import httpx
import pytest
import zmq

from e2e.vllm.servers import ADAPTER, MODEL, NUM_GPU_BLOCKS, PORT, TINY_MODEL_DIR
from poolgate.up.processes import POOLGATE, Process, free_port, wait_for_health
from simulator.kvevents import decode_batch
from tests.support.vllm_conformance import event_differences, metrics_differences, picker_reading

pytestmark = [pytest.mark.xdist_group("vllm"), pytest.mark.timeout(900)]  # vLLM starts in 30 s to minutes
SIM_HOST = "127.250.0.9"
BLOCK_SIZE = 128


@pytest.fixture(scope="module")
def simulator(tiny_model, tmp_path_factory):
    """`poolgate sim` set up like the suite's first vLLM: same model name, adapter, cache geometry and tokenizer,
    publishing KV events."""
    kv_port = free_port(SIM_HOST)
    argv = (
        *POOLGATE,
        "sim",
        "--model",
        MODEL,
        "--lora",
        ADAPTER,
        "--max-loras",
        "2",
        "--block-size",
        str(BLOCK_SIZE),
        "--num-gpu-blocks",
        str(NUM_GPU_BLOCKS),
        "--max-model-len",
        "2048",
        "--tokenizer",
        str(TINY_MODEL_DIR / "model"),
        "--kv-events-endpoint",
        f"tcp://*:{kv_port}",
        "--kv-events-topic",
        f"kv@{SIM_HOST}@{MODEL}",
        "--no-latency",
        "--listen",
        f"{SIM_HOST}:{PORT}",
    )
    process = Process("sim", argv, tmp_path_factory.mktemp("sim") / "sim.log")
    try:
        wait_for_health(SIM_HOST, PORT, "/health", timeout=30, process=process)
        yield f"http://{SIM_HOST}:{PORT}", kv_port
    finally:
        process.stop()


def test_the_simulators_metrics_show_what_live_vllm_shows_for_everything_the_picker_reads(vllm_pair, simulator):
    first = vllm_pair[0]
    sim_url, _ = simulator
    for url in (first.url, sim_url):  # an adapter request makes vLLM show its LoRA series
        body = {"model": ADAPTER, "prompt": "ka lo", "max_tokens": 1}
        httpx.post(f"{url}/v1/completions", json=body, timeout=60).raise_for_status()
    real_text = httpx.get(f"{first.url}/metrics", timeout=10).text
    sim_text = httpx.get(f"{sim_url}/metrics", timeout=10).text
    assert metrics_differences(sim_text, real_text) == []
    real, simulated = picker_reading(real_text), picker_reading(sim_text)
    assert (real.block_size, real.num_gpu_blocks) == (simulated.block_size, simulated.num_gpu_blocks)
    assert real.lora is not None and simulated.lora is not None and real.lora.max_lora == simulated.lora.max_lora


def _keys(value: object) -> set[str]:
    return set(value) if isinstance(value, dict) else set()


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_the_simulators_responses_have_vllms_shape(vllm_pair, simulator, path):
    """Every field the simulator returns is one vLLM returns, at the top, in the choice and in the usage."""
    sim_url, _ = simulator
    if path.endswith("chat/completions"):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "ka lo"}], "max_tokens": 3}
    else:
        body = {"model": MODEL, "prompt": "ka lo", "max_tokens": 3}
    real = httpx.post(f"{vllm_pair[0].url}{path}", json=body, timeout=60).json()
    simulated = httpx.post(f"{sim_url}{path}", json=body, timeout=60).json()
    assert _keys(simulated) <= _keys(real)
    assert _keys(simulated["choices"][0]) <= _keys(real["choices"][0])
    assert _keys(simulated["usage"]) <= _keys(real["usage"])
    assert {"id", "object", "model", "choices", "usage"} <= _keys(simulated)
    assert real["object"] == simulated["object"] and real["model"] == simulated["model"] == MODEL

    real_models = httpx.get(f"{vllm_pair[0].url}/v1/models", timeout=10).json()["data"]
    sim_models = httpx.get(f"{sim_url}/v1/models", timeout=10).json()["data"]
    assert {m["id"] for m in sim_models} == {m["id"] for m in real_models} == {MODEL, ADAPTER}
    assert _keys(sim_models[0]) <= _keys(real_models[0])


def _subscribe(endpoint: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.RCVTIMEO, 3000)
    socket.connect(endpoint)
    return socket


def _stored_after(socket: zmq.Socket, url: str, prompt: str) -> tuple[list[bytes], dict]:
    """Send `prompt`; the first message with a BlockStored event that follows, and that event."""
    httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 1}, timeout=60)
    while True:
        frames = socket.recv_multipart()  # zmq.Again after 3 s of silence
        events = decode_batch(frames[2])[1]
        stored = [event for event in events if event["type"] == "BlockStored"]
        if stored:
            return frames, stored[0]


def test_the_simulator_streams_vllms_kv_events_with_the_same_token_ids(vllm_pair, simulator):
    first = vllm_pair[0]
    sim_url, sim_kv_port = simulator
    streams = {
        first.url: _subscribe(f"tcp://{first.host}:{first.kv_events_port}"),
        sim_url: _subscribe(f"tcp://{SIM_HOST}:{sim_kv_port}"),
    }
    try:
        for url, socket in streams.items():  # events published before the subscription is up are lost: warm up
            for _attempt in range(10):
                try:
                    _stored_after(socket, url, f"warm up {uuid.uuid4().hex} " + "ka lo mi " * 60)
                    break
                except zmq.Again:
                    continue
            else:
                pytest.fail(f"no KV event from {url} in 10 attempts")
        prompt = f"{uuid.uuid4().hex} " + "ne ru sa to vi ze " * 40  # a prompt neither has cached
        (real_frames, real), (sim_frames, simulated) = (_stored_after(s, url, prompt) for url, s in streams.items())
    finally:
        for socket in streams.values():
            socket.close(linger=0)
    assert len(real_frames) == len(sim_frames) == 3
    assert real_frames[0] == f"kv@{first.host}@{MODEL}".encode() and sim_frames[0] == f"kv@{SIM_HOST}@{MODEL}".encode()
    assert len(real_frames[1]) == len(sim_frames[1]) == 8
    assert event_differences(simulated, real) == []
    assert real["block_size"] == simulated["block_size"] == BLOCK_SIZE
    blocks = min(len(real["block_hashes"]), len(simulated["block_hashes"]))
    assert blocks >= 1 and real["token_ids"][: blocks * BLOCK_SIZE] == simulated["token_ids"][: blocks * BLOCK_SIZE]
