"""`poolgate sim` as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import aiohttp
import pytest

from poolgate.cli import build_parser, main
from simulator.cli import adapters_from_args, config_from_args


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "poolgate.cli", "sim", *args], stderr=subprocess.PIPE, text=True)


def wait_for_log(process: subprocess.Popen, message: str) -> dict:
    for line in process.stderr:
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("msg") == message:
            return entry
    raise AssertionError(f"the process ended (exit code {process.wait()}) before logging {message!r}")


def test_help_explains_the_simulator(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["sim", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for expected in ("--listen", "--lora", "--engine", "--no-latency", "--max-num-seqs", "x-poolgate-served-by"):
        assert expected in text


def test_options_become_the_server_config():
    args = build_parser().parse_args(
        [
            "sim",
            "--decode-ms",
            "5",
            "--max-num-seqs",
            "32",
            "--engine",
            "sglang",
            "--lora",
            "a,b=/p",
            "--lora",
            "c",
            "--no-prefix-caching",
        ]
    )
    config = config_from_args(args)
    assert config.decode_step == 0.005 and config.max_num_seqs == 32 and config.engine == "sglang"
    assert config.prefill_overhead == 0.030 and not config.prefix_caching
    assert adapters_from_args(args.lora) == {"a": "/adapters/a", "b": "/p", "c": "/adapters/c"}
    quiet = config_from_args(build_parser().parse_args(["sim", "--no-latency"]))
    assert (quiet.decode_step, quiet.prefill_overhead, quiet.prefill_per_token, quiet.lora_load) == (0, 0, 0, 0)


async def test_serves_several_addresses_until_sigterm():
    process = start(
        "--listen", "127.0.0.13:0", "--listen", "127.0.0.14:0", "--lora", "ad1,ad2=/x/ad2", "--decode-ms", "1"
    )
    try:
        addresses = wait_for_log(process, "simulated servers ready")["addresses"]
        assert [a.rsplit(":", 1)[0] for a in addresses] == ["127.0.0.13", "127.0.0.14"]
        async with aiohttp.ClientSession() as http:
            for address in addresses:
                async with http.get(f"http://{address}/v1/models") as response:
                    assert response.headers["x-poolgate-served-by"] == address
                    models = {m["id"]: m["root"] for m in (await response.json())["data"]}
                assert models["ad1"] == "/adapters/ad1" and models["ad2"] == "/x/ad2"
            body = {"model": "ad2", "prompt": "hello", "max_tokens": 4}
            async with http.post(f"http://{addresses[1]}/v1/completions", json=body) as response:
                assert (await response.json())["usage"]["completion_tokens"] == 4
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_bad_arguments_exit_with_2():
    process = start("--listen", "nowhere")
    try:
        entry = wait_for_log(process, "invalid arguments")
        assert "ip:port" in entry["error"]
        assert process.wait(timeout=10) == 2
    finally:
        process.kill()
        process.wait()
