"""`poolgate sim`: serve simulated vLLM/SGLang model servers on loopback addresses."""

from __future__ import annotations

import argparse

from poolgate import logs
from simulator.config import DEFAULT_MODEL, ENGINES, METRICS_FAULT_PATH, METRICS_FAULTS, ServerConfig

_DEFAULTS = ServerConfig()

DESCRIPTION = """\
Serve one or more simulated model servers from this process, each on its own address. They speak the OpenAI API
(/v1/completions, /v1/chat/completions with SSE streaming, /v1/models), vLLM's LoRA endpoints
(/v1/load_lora_adapter, /v1/unload_lora_adapter) and render endpoints (/v1/chat/completions/render,
/v1/completions/render), /health and /metrics with vLLM's (or SGLang's) metric names.

No GPU is involved: a latency model schedules requests like vLLM does (continuous batching of at most
--max-num-seqs sequences, a FIFO queue, a KV cache of --num-gpu-blocks blocks with prefix caching, LoRA slots),
and answers with synthetic text of exactly max_tokens tokens (1 token = 4 bytes of prompt text). Every response
carries `x-poolgate-served-by: <ip>:<port>`. The defaults model an 8B model on one H100 (docs/simulator.md)."""

EPILOG = """\
examples:
  poolgate sim --listen 127.0.0.10:8000 --listen 127.0.0.11:8000 --lora ad1,ad2
  poolgate sim --engine sglang --max-num-seqs 64 --decode-ms 20
  poolgate sim --no-latency --listen 127.0.0.10:8000     # answer at once, for overhead benchmarks"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `sim` arguments."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--listen",
        action="append",
        metavar="IP:PORT",
        help="address of one simulated server; repeat for several (default: 127.0.0.1:8000)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"base model name served (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME[=PATH],...",
        help="LoRA adapters loaded at start; comma-separated, repeatable (default path /adapters/NAME)",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, default=_DEFAULTS.engine, help="whose metric names /metrics uses (default: vllm)"
    )
    capacity = parser.add_argument_group("capacity")
    capacity.add_argument(
        "--max-num-seqs",
        type=int,
        default=_DEFAULTS.max_num_seqs,
        help="most requests running at once (default: %(default)s)",
    )
    capacity.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=_DEFAULTS.max_num_batched_tokens,
        help="token budget of one engine step; longer prefills are chunked (default: %(default)s)",
    )
    capacity.add_argument(
        "--block-size", type=int, default=_DEFAULTS.block_size, help="tokens per KV-cache block (default: %(default)s)"
    )
    capacity.add_argument(
        "--num-gpu-blocks",
        type=int,
        default=_DEFAULTS.num_gpu_blocks,
        help="KV-cache blocks (default: %(default)s, an 8B model on an 80 GB H100)",
    )
    capacity.add_argument(
        "--max-model-len",
        type=int,
        default=_DEFAULTS.max_model_len,
        help="longest prompt + max_tokens accepted (default: %(default)s)",
    )
    capacity.add_argument(
        "--max-loras",
        type=int,
        default=_DEFAULTS.max_loras,
        help="distinct LoRA adapters per batch; 0 disables LoRA (default: %(default)s)",
    )
    capacity.add_argument("--no-prefix-caching", action="store_true", help="disable automatic prefix caching")
    capacity.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="a Hugging Face tokenizer.json (or a model directory holding one): prompts are counted and cached in "
        "its tokens instead of 4 bytes per token",
    )
    capacity.add_argument(
        "--kv-events-endpoint",
        metavar="ZMQ",
        help="publish vLLM's KV-cache events (ZMQ, msgpack) here, e.g. tcp://*:5557 (bind) or tcp://host:5557 "
        "(connect); needs --tokenizer",
    )
    capacity.add_argument(
        "--kv-events-topic", metavar="TOPIC", help="topic of the KV-cache events (default: kv@LISTEN@MODEL)"
    )
    latency = parser.add_argument_group("latency")
    latency.add_argument(
        "--prefill-overhead-ms",
        type=float,
        default=_DEFAULTS.prefill_overhead * 1e3,
        help="fixed cost of a step that computes prompt tokens (default: %(default)s)",
    )
    latency.add_argument(
        "--prefill-ms-per-token",
        type=float,
        default=_DEFAULTS.prefill_per_token * 1e3,
        help="cost per uncached prompt token (default: %(default)s)",
    )
    latency.add_argument(
        "--decode-ms",
        type=float,
        default=_DEFAULTS.decode_step * 1e3,
        help="decode step time at batch size 1 (default: %(default)s)",
    )
    latency.add_argument(
        "--full-batch-slowdown",
        type=float,
        default=_DEFAULTS.full_batch_slowdown,
        help="decode step time factor at batch size --max-num-seqs (default: %(default)s)",
    )
    latency.add_argument(
        "--lora-load-ms",
        type=float,
        default=_DEFAULTS.lora_load * 1e3,
        help="cost of loading an adapter that is not resident (default: %(default)s)",
    )
    latency.add_argument(
        "--no-latency", action="store_true", help="answer as fast as possible (all latency parameters 0)"
    )
    faults = parser.add_argument_group("fault injection (for testing gateways and scrapers)")
    faults.add_argument(
        "--metrics-fault",
        choices=METRICS_FAULTS,
        metavar="{" + ",".join(METRICS_FAULTS) + "}",
        help="make /metrics hang (never answer) or answer garbage, and serve "
        f"GET/PUT {METRICS_FAULT_PATH} to read the scrape counts and switch modes while running "
        "(`none` starts healthy)",
    )
    logs.add_arguments(parser)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Build the server configuration the arguments describe; ValueError if inconsistent."""
    config = ServerConfig(
        model=args.model,
        engine=args.engine,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        block_size=args.block_size,
        num_gpu_blocks=args.num_gpu_blocks,
        max_model_len=args.max_model_len,
        max_loras=args.max_loras,
        prefix_caching=not args.no_prefix_caching,
        prefill_overhead=args.prefill_overhead_ms / 1e3,
        prefill_per_token=args.prefill_ms_per_token / 1e3,
        decode_step=args.decode_ms / 1e3,
        full_batch_slowdown=args.full_batch_slowdown,
        lora_load=args.lora_load_ms / 1e3,
        tokenizer=args.tokenizer,
        kv_events_endpoint=args.kv_events_endpoint,
        kv_events_interface=_pod_address(args.listen),
        kv_events_topic=args.kv_events_topic,
    )
    return config.without_latency() if args.no_latency else config


def _pod_address(listens: list[str] | None) -> str | None:
    """The address a KV-event endpoint's `*` binds: vLLM binds every interface of its pod, and a simulated pod is
    its listen address, so pods side by side on one machine's loopback each bind their own (None: listening on
    several or on every address)."""
    from simulator.server import parse_listen

    hosts = {parse_listen(listen)[0] for listen in listens or ()}
    host = hosts.pop() if len(hosts) == 1 else None
    return None if host in (None, "0.0.0.0", "::") else host


def adapters_from_args(values: list[str]) -> dict[str, str]:
    """Parse `--lora` values (`name[=path]`, comma-separated) into name -> path."""
    adapters = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, path = item.partition("=")
            adapters[name] = path or f"/adapters/{name}"
    return adapters


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code."""
    import asyncio
    import logging
    import signal

    from simulator.server import SimulatedServers, parse_listen

    logs.setup(args.log_level, args.log_format == "json")
    log = logging.getLogger("poolgate.simulator")
    listens = args.listen or ["127.0.0.1:8000"]
    try:
        config = config_from_args(args)
        adapters = adapters_from_args(args.lora)
        for listen in listens:
            parse_listen(listen)
        if adapters and config.max_loras == 0:
            raise ValueError("--lora needs --max-loras of at least 1")
    except ValueError as exc:
        log.error("invalid arguments", extra={"error": str(exc)})
        return 2

    async def serve() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        servers = SimulatedServers(listens, config, adapters, args.metrics_fault)
        try:
            await servers.start()
        except OSError as exc:
            log.error("cannot listen", extra={"error": str(exc)})
            return 1
        log.info("simulated servers ready", extra={"addresses": servers.addresses})
        await stop.wait()
        await servers.stop()
        return 0

    return asyncio.run(serve())
