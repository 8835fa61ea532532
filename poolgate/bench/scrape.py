"""`poolgate bench scrape`: the picker's metrics scraper against N endpoints served for real over loopback HTTP.

Server processes answer `GET /metrics` on N addresses 127.0.x.y with a realistic vLLM page (the captured 53 KB page,
each endpoint with its own queue, batch, KV and LoRA values; `metrics_pages.py`). This process runs the picker's
`MetricsScraper` on uvloop, as the picker does, and measures over a window: its CPU (cores), good scrapes per second,
the staleness of the pool's metrics (their age when sampled at random moments), whether every endpoint's values were
read right, and the servers' CPU per scrape. Two server behaviours: answering `?name[]=` with only the series asked
for (prometheus-client servers such as vLLM's) and ignoring it (the scraper then parses the lines it needs out of the
whole page). A share of the endpoints is busy: their values change between any two scrapes (each answers the next of
four pages in turn), where an idle engine answers the same bytes every time, which the scraper reads once. A whole
page is always busy: vLLM's counts its own requests (`http_requests_total`). A last table is what producing the page costs the server, per scrape and at 20 scrapes/s: rendering a
vLLM-like registry and the simulator's page, and a real `poolgate sim` process scraped every 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import threading
import time
from multiprocessing.connection import Connection
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoints", type=int, default=256, help="endpoints scraped (default: %(default)s)")
    parser.add_argument(
        "--intervals", default="0.05", help="scrape intervals in seconds, comma-separated (default: %(default)s)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per case (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default: %(default)s)")
    parser.add_argument(
        "--busy",
        default="0,1",
        help="shares of the endpoints whose values change at every scrape, comma-separated; the whole-page case is "
        "always all busy (default: %(default)s)",
    )
    parser.add_argument(
        "--server-processes", type=int, default=2, help="processes serving the endpoints (default: %(default)s)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    parser.set_defaults(run=run)


BUSY_TURNS = 4  # the pages a busy endpoint answers in turn


def endpoint_values(index: int, turn: int = 0) -> dict[str, Any]:
    """The values endpoint `index` shows on its `turn`th page (a busy endpoint's queue, batch and KV move from one
    page to the next): queue, batch, KV usage and LoRA adapters."""
    return {
        "waiting": index % 37 + turn,
        "running": index % 11 + turn,
        "kv_usage": round((index + 7 * turn) % 100 / 100, 2),
        "lora_running": f"adapter-{index % 5}",
        "lora_waiting": "" if index % 2 else f"adapter-{index % 3}",
    }


def busy_indices(count: int, share: float) -> set[int]:
    """Which of `count` endpoints are busy for a share (0..1), spread evenly over them."""
    return {index for index in range(count) if int((index + 1) * share) > int(index * share)}


def endpoint_addresses(count: int) -> list[str]:
    """`count` loopback addresses, 127.0.1.1 onwards (254 per third octet)."""
    return [f"127.0.{1 + i // 254}.{1 + i % 254}" for i in range(count)]


def run(args: argparse.Namespace) -> int:
    from poolgate.bench.report import output_console, print_table, write_json

    if args.endpoints < 1 or args.server_processes < 1:
        raise SystemExit("--endpoints and --server-processes must be at least 1")
    intervals = [float(value) for value in args.intervals.split(",")]
    shares = [float(value) for value in args.busy.split(",")]
    if not all(0.0 <= share <= 1.0 for share in shares):
        raise SystemExit("--busy shares must be between 0 and 1")
    rows: list[dict[str, Any]] = []
    for honour_names, busy in [(True, share) for share in shares] + [(False, 1.0)]:
        for interval in intervals:
            rows.append(measure_scraping(args.endpoints, interval, honour_names, busy, args))
    rows.extend(measure_rendering())
    rows.append(measure_simulator(args.duration))
    out = output_console()
    print_table(
        f"picker scraping {args.endpoints} endpoints (uvloop, one process)",
        [r for r in rows if r["benchmark"] == "scrape"],
        [
            "mode",
            "busy_share",
            "interval_ms",
            "scrapes_per_s",
            "target_per_s",
            "picker_cores",
            "picker_us_per_scrape",
            "staleness_p50_ms",
            "staleness_p99_ms",
            "values_right",
            "unchanged_share",
            "scrape_errors",
            "page_bytes",
            "server_us_per_scrape",
        ],
        out,
    )
    print_table(
        "rendering /metrics on the server, per scrape",
        [r for r in rows if r["benchmark"] == "render"],
        ["mode", "page_bytes", "us_per_scrape", "core_share_at_20_per_s"],
        out,
    )
    if args.json:
        write_json(args.json, rows)
    return 0


def measure_scraping(
    endpoints: int, interval: float, honour_names: bool, busy: float, args: argparse.Namespace
) -> dict[str, Any]:
    """Serve `endpoints` pages (a `busy` share of them changing at every scrape) from server processes and scrape
    them every `interval` for the measured window."""
    from poolgate.bench.metrics_pages import captured_page

    captured_page()  # fail early, naming the file, if the page is missing
    addresses = endpoint_addresses(endpoints)
    busy_addresses = {addresses[index] for index in busy_indices(endpoints, busy)}
    context = multiprocessing.get_context("spawn")
    shares = [addresses[i :: args.server_processes] for i in range(args.server_processes)]
    links, processes = [], []
    for share in shares:
        parent, child = context.Pipe()
        busy_share = [address for address in share if address in busy_addresses]
        process = context.Process(target=_serve, args=(share, busy_share, honour_names, child), daemon=True)
        process.start()
        links.append(parent)
        processes.append(process)
    try:
        ports: dict[str, int] = {}
        for link in links:
            ports.update(link.recv())
        import uvloop

        row = uvloop.run(_scrape(addresses, ports, interval, links, args.warmup, args.duration))
    finally:
        for link in links:
            link.send("exit")
        for process in processes:
            process.join(timeout=5)
    row.update(
        mode="name[] honoured" if honour_names else "whole page",
        busy_share=busy,
        interval_ms=round(interval * 1000, 1),
    )
    return row


async def _scrape(
    addresses: list[str],
    ports: dict[str, int],
    interval: float,
    links: list[Connection],
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from picker.pool import EndpointSpec, MetricsScraper, PoolState

    pool = PoolState()
    pool.set_endpoints(EndpointSpec(address, ports[address], f"pod-{i}") for i, address in enumerate(addresses))
    rng = random.Random(7)
    ages: list[float] = []
    registry = CollectorRegistry()
    async with MetricsScraper(pool, interval=interval, timeout=1.0, registry=registry) as scraper:
        await asyncio.sleep(warmup)
        for link in links:
            link.send("start")
        cpu_start, started = time.process_time(), time.monotonic()
        scrapes_start, unchanged_start = scraper.good_scrapes, scraper.unchanged_answers
        while time.monotonic() - started < duration:
            await asyncio.sleep(rng.uniform(0.005, 0.045))  # sampled at random moments, not in step with the slots
            now = pool.clock()
            ages.extend(endpoint.metrics_age(now) for endpoint in pool.endpoints())
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu_start
        scrapes = scraper.good_scrapes - scrapes_start
        unchanged = scraper.unchanged_answers - unchanged_start
        for link in links:
            link.send("stop")
        server_cpu = served = page_bytes = 0
        for link in links:
            report = link.recv()
            server_cpu += report["cpu"]
            served += report["served"]
            page_bytes = report["page_bytes"]
        turns = await _freeze(pool, links)
    errors = {
        sample.labels["reason"]: int(sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }
    right = sum(
        _reads_right(pool.get(f"{address}:{ports[address]}"), i, turns[address]) for i, address in enumerate(addresses)
    )
    ages.sort()
    return {
        "benchmark": "scrape",
        "endpoints": len(addresses),
        "scrapes_per_s": round(scrapes / elapsed),
        "target_per_s": round(len(addresses) / interval),
        "picker_cores": round(cpu / elapsed, 3),
        "picker_us_per_scrape": round(cpu / max(scrapes, 1) * 1e6, 1),
        "staleness_p50_ms": round(_quantile(ages, 0.5) * 1000, 1),
        "staleness_p99_ms": round(_quantile(ages, 0.99) * 1000, 1),
        "values_right": f"{right}/{len(addresses)}",
        "unchanged_share": round(unchanged / max(scrapes, 1), 3),
        "scrape_errors": ", ".join(f"{reason} {count}" for reason, count in sorted(errors.items())) or "0",
        "page_bytes": page_bytes,
        "server_us_per_scrape": round(server_cpu / max(served, 1) * 1e6, 1),
    }


async def _freeze(pool: Any, links: list[Connection], timeout: float = 10.0) -> dict[str, int]:
    """Have the servers answer their last pages from now on and wait until every endpoint has been scraped since;
    returns the page each address answered last (the values the pool must now hold)."""
    turns: dict[str, int] = {}
    for link in links:
        link.send("freeze")
    for link in links:
        turns.update(link.recv())
    since = {endpoint.key: endpoint.metrics.updated_at for endpoint in pool.endpoints()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(endpoint.metrics.updated_at != since[endpoint.key] for endpoint in pool.endpoints()):
            break
        await asyncio.sleep(0.01)
    return turns


def _reads_right(endpoint: Any, index: int, turn: int) -> bool:
    expected = endpoint_values(index, turn)
    m = endpoint.metrics
    return (
        (m.waiting, m.running, m.kv_usage) == (expected["waiting"], expected["running"], expected["kv_usage"])
        and m.running_adapters == frozenset({expected["lora_running"]})
        and m.waiting_adapters == frozenset(filter(None, [expected["lora_waiting"]]))
        and (m.block_size, m.num_gpu_blocks) == (128, 8192)
    )


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _serve(addresses: list[str], busy: list[str], honour_names: bool, link: Connection) -> None:
    """A server process: serve the addresses' pages on uvloop (the busy ones in turn); report CPU and answers between
    "start" and "stop", and the page each address answered last at "freeze" (after which it answers that one)."""
    import uvloop

    from picker.pool.metrics import ENGINES, metrics_query
    from poolgate.bench.metrics_pages import PageServer, captured_page, vllm_page

    captured = captured_page()
    pages = {
        address: [
            vllm_page(captured, **endpoint_values(_index_of(address), turn))
            for turn in range(BUSY_TURNS if address in busy else 1)
        ]
        for address in addresses
    }
    server = PageServer(pages, honour_names=honour_names)
    page_bytes = len(server.answer(addresses[0], f"/metrics?{metrics_query(ENGINES['vllm'])}") or b"")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        link.send(await server.start())
        stopped = loop.create_future()

        async def freeze() -> dict[str, int]:
            return server.freeze()

        def control() -> None:
            cpu = served = 0.0
            while (message := link.recv()) != "exit":
                if message == "start":
                    cpu, served = time.process_time(), server.served
                elif message == "stop":
                    link.send(
                        {"cpu": time.process_time() - cpu, "served": server.served - served, "page_bytes": page_bytes}
                    )
                elif message == "freeze":  # on the loop's thread, between two answers
                    link.send(asyncio.run_coroutine_threadsafe(freeze(), loop).result())
            loop.call_soon_threadsafe(stopped.set_result, None)

        threading.Thread(target=control, daemon=True).start()
        await stopped
        await server.stop()

    uvloop.run(main())


def _index_of(address: str) -> int:
    """The endpoint index of an address made by `endpoint_addresses`."""
    third, fourth = (int(part) for part in address.split(".")[2:])
    return (third - 1) * 254 + fourth - 1


def measure_simulator(duration: float) -> dict[str, Any]:
    """What serving `/metrics` costs a real `poolgate sim` process scraped every 50 ms by the picker's scraper: its
    CPU while scraped minus its CPU while idle, per scrape."""
    import socket
    import subprocess
    import sys

    import uvloop

    from poolgate.bench.overhead import cpu_seconds

    with socket.socket() as probe:
        probe.bind(("127.0.9.200", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "poolgate.cli", "sim", "--listen", f"127.0.9.200:{port}", "--max-loras", "4"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return uvloop.run(_scrape_simulator(process.pid, port, duration, cpu_seconds))
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _scrape_simulator(pid: int, port: int, duration: float, cpu_seconds: Any) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from picker.pool import EndpointSpec, MetricsScraper, PoolState

    pool = PoolState()
    pool.set_endpoints([EndpointSpec("127.0.9.200", port)])
    key = f"127.0.9.200:{port}"
    async with MetricsScraper(pool, interval=0.05, registry=CollectorRegistry()) as scraper:
        for _ in range(1200):  # until the simulator listens and answers (a minute at most)
            await asyncio.sleep(0.05)
            if pool.get(key).metrics.updated_at is not None:  # type: ignore[union-attr]
                break
        else:
            raise RuntimeError(f"the simulator on {key} never answered a scrape")
        await asyncio.sleep(1.0)
        cpu, scrapes, started = cpu_seconds(pid), scraper.good_scrapes, time.monotonic()
        await asyncio.sleep(duration)
        scraped_cpu, scrapes = cpu_seconds(pid) - cpu, scraper.good_scrapes - scrapes
        scraped_for = time.monotonic() - started
    cpu, started = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(duration)
    idle_cores = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
    per_scrape = max(0.0, scraped_cpu - idle_cores * scraped_for) / max(scrapes, 1)
    return {
        "benchmark": "render",
        "mode": "simulator process over HTTP (aiohttp, name[], cache)",
        "page_bytes": None,
        "us_per_scrape": round(per_scrape * 1e6, 1),
        "core_share_at_20_per_s": f"{per_scrape * 20 * 100:.2f}%",
    }


def measure_rendering(repeats: int = 200) -> list[dict[str, Any]]:
    """What producing the page costs a server per scrape: prometheus-client rendering a registry with the captured
    vLLM page's families (whole and `?name[]=`-restricted: an estimate for vLLM, whose live metric objects cost more),
    and the simulator's `/metrics` (rendered, and served from its cache while the server is unchanged)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from picker.pool.metrics import ENGINES
    from poolgate.bench.metrics_pages import captured_page
    from simulator.clock import VirtualClock
    from simulator.config import ServerConfig
    from simulator.metrics import MetricsPage
    from simulator.model import ServerModel

    names = ENGINES["vllm"].names()
    families = list(text_string_to_metric_families(captured_page()))

    class Replay:
        def describe(self) -> list[Any]:
            return families

        def collect(self) -> list[Any]:
            return families

    vllm_like = CollectorRegistry()
    vllm_like.register(Replay())  # type: ignore[arg-type]
    simulated = MetricsPage(ServerModel(VirtualClock(), ServerConfig(max_loras=4), name="sim"))
    cases = [
        ("vLLM-like registry, whole page", lambda: generate_latest(vllm_like)),
        ("vLLM-like registry, name[] restricted", lambda: generate_latest(vllm_like.restricted_registry(names))),  # type: ignore[arg-type]
        ("simulator, whole page rendered", lambda: generate_latest(simulated.registry)),
        ("simulator, name[] rendered", lambda: generate_latest(simulated.registry.restricted_registry(names))),  # type: ignore[arg-type]
        ("simulator, unchanged (cached)", lambda: simulated.render(names)),
    ]
    rows = []
    for mode, render in cases:
        page = render()
        started = time.process_time()
        for _ in range(repeats):
            render()
        per_scrape = (time.process_time() - started) / repeats
        rows.append(
            {
                "benchmark": "render",
                "mode": mode,
                "page_bytes": len(page),
                "us_per_scrape": round(per_scrape * 1e6, 1),
                "core_share_at_20_per_s": f"{per_scrape * 20 * 100:.2f}%",
            }
        )
    return rows
