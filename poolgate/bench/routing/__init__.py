"""`poolgate bench routing`: pickers compared side by side on a simulated vLLM fleet, on a virtual clock.

- `workloads`: what clients send and when (prefix-heavy, no-prefix, multi-turn, multi-lora, bursty);
- `fleet`: one run — simulated servers, the picker's own scheduler and pool state, the 50 ms scrape loop;
- `pickers`: the compared profiles (round-robin, random, least-request, llmd-default, llmd-precise, poolgate), the
  `soonest` reference (exact server state, greedy) and the computed bounds (pooled, oracle);
- `oracle`: the analytic bounds (oracle, pooled) and the fleet's capacity per workload;
- `results`: a run's records -> one row; `plots`: PNGs; `runner`: cases and processes; `cli`: the command.

See docs/benchmarks.md.
"""

DURATION, QUICK_DURATION = 600.0, 120.0  # seconds of arrivals per case
LOADS, QUICK_LOADS = (0.3, 0.5, 0.7, 0.85, 1.0, 1.15), (0.5, 0.85, 1.15)  # fractions of the fleet's capacity
WARMUP_FRACTION = 0.2  # of each case: the rate ramps up, nothing is measured
SCRAPE_INTERVAL = 0.05  # seconds between scrapes of a server by a picker, as the live scraper
PEER_DELAY = 0.001  # seconds a picker replica's load announcement takes to reach its peers (one datagram hop)
