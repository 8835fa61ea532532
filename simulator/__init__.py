"""A vLLM-compatible model server simulator: one latency model, on the wall clock or on a virtual clock.

The engine model (`ServerModel`) schedules requests like vLLM: continuous batching of at most `max_num_seqs`
sequences, a FIFO waiting queue, chunked prefill within a per-step token budget, a KV cache of `num_gpu_blocks`
blocks with automatic prefix caching (LRU eviction of unreferenced blocks) and `max_loras` LoRA slots. It runs on
any clock: `VirtualClock` (discrete events, no sleeping; for routing benchmarks over fleets of servers) or
`WallClock` (the asyncio loop; behind the HTTP servers of `simulator.server`). See docs/simulator.md.

Virtual-clock fleet (the benchmark's API):

    from simulator import Prompt, ServerConfig, ServerModel, VirtualClock

    clock = VirtualClock()
    fleet = [ServerModel(clock, ServerConfig(), adapters={"ad1": "/lora/ad1"}, name=f"10.0.0.{i}:8000")
             for i in range(8)]
    records = []

    def arrive(server, prompt):
        server.submit(prompt, max_tokens=1000, model="ad1", on_finish=records.append)

    prompt = Prompt.from_segments([("system-3", 6000), ("user-42", 1000)])   # or Prompt.from_text(text)
    clock.call_at(0.25, arrive, fleet[0], prompt)     # submit at virtual time 0.25 s
    clock.run_until(1.0)                              # advance to 1.0 s ...
    fleet[0].gauges()                                 # ... and read waiting / running / KV usage / adapters
    fleet[0].gauge_samples()                          # the same as prometheus_client Samples, scrape names
    clock.run_until_idle()
    records[0].ttft, records[0].e2e, records[0].cached_tokens, records[0].itl_percentile(99)

`ServerModel.submit(prompt, max_tokens, model=None, on_finish=None, on_tokens=None, output_tokens=None)` accepts
a request at the clock's current time and returns its `Request`, whose fields fill in as it runs: `admitted_at`,
`first_token_at`, `finished_at`, `output_tokens`, `cached_tokens`, `itl_runs` (run-length inter-token gaps).

Servers in-process (inside a running asyncio loop), each on its own loopback address:

    from simulator.server import SimulatedServers

    async with SimulatedServers(["127.0.0.10:8000", "127.0.0.11:8000"], ServerConfig(), {"ad1": "/lora/ad1"}) as pods:
        ...  # pods.addresses, pods[0].model (the ServerModel behind the first server)

The command line: `poolgate sim --help`.
"""

import importlib

# The public names, imported on first use (PEP 562) so that `poolgate --help` does not load the engine.
_EXPORTS = {
    "Gauges": "simulator.model",
    "InvalidRequestError": "simulator.model",
    "ServerModel": "simulator.model",
    "UnknownModelError": "simulator.model",
    "Prompt": "simulator.tokens",
    "Request": "simulator.request",
    "ServerConfig": "simulator.config",
    "VirtualClock": "simulator.clock",
    "WallClock": "simulator.clock",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
