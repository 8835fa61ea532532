"""`poolgate bench picker`: the scheduling core in-process — decisions per second and latency for 10, 100 and 1,000
endpoints per profile, the CPU cost of parsing 1 KB and 100 KB request bodies, the prefix indexes' memory, and (with
`--tokenizer`) the cost of engine-exact tokenization and what it does to the latency of other requests."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoints", default="10,100,1000", help="pool sizes, comma-separated (default: %(default)s)")
    parser.add_argument(
        "--profiles",
        default="llmd-default,poolgate-default",
        help="scheduling profiles, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--decisions", type=int, default=2000, help="decisions timed per case (default: %(default)s)")
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="a model directory (tokenizer.json, chat template): also time tokenization"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from picker.kvcache.bench import measure_index_memory, measure_loop_latency, measure_tokenize
    from picker.scheduling.bench import run_picker_benchmark
    from poolgate.bench.report import output_console, print_table, write_json

    console = Console(stderr=True)
    with console.status("benchmarking the picker ...") as status:
        rows = run_picker_benchmark(
            profiles=args.profiles.split(","),
            endpoint_counts=[int(n) for n in args.endpoints.split(",")],
            decisions=args.decisions,
            progress=lambda message: status.update(message),
        )
        rows.append(measure_index_memory())
        if args.tokenizer:
            rows.extend(measure_tokenize(args.tokenizer, size) for size in (1_000, 10_000, 100_000))
            rows.extend(measure_loop_latency(args.tokenizer))
    out = output_console()
    print_table(
        "scheduling decisions",
        [r for r in rows if r["benchmark"] == "decision"],
        ["profile", "endpoints", "decisions_per_s", "p50_us", "p99_us"],
        out,
    )
    print_table(
        "request parsing (per request, microseconds)",
        [r for r in rows if r["benchmark"] == "request-parse"],
        ["body_bytes", "orjson_loads_us", "prompt_bytes_us", "prefix_hashes_us", "total_us"],
        out,
    )
    memory = [r for r in rows if r["benchmark"] == "prefix-index-memory"]
    print_table("prefix index memory", memory, [k for k in memory[0] if k != "benchmark"] if memory else [], out)
    for name, title in (
        ("precise-index-memory", "precise prefix index memory"),
        ("tokenize", "tokenization"),
        ("event-loop", "a small request's pick while large prompts are tokenized"),
    ):
        found = [r for r in rows if r["benchmark"] == name]
        print_table(title, found, [k for k in found[0] if k != "benchmark"] if found else [], out)
    if args.json:
        write_json(args.json, rows)
    return 0
