"""`poolgate bench peers`: routing quality against the routers a user would otherwise deploy, on the real stack.

- `shapes`: the workload shapes (prefix-heavy with 1.5k / 6k shared system prompts, no-prefix; 64 / 256 / 1,000
  output tokens), built from the routing benchmark's workload API;
- `systems`: poolgate's profiles, Envoy alone, sglang-router and vllm-router, each on a fresh simulated fleet;
- `client`: the open-loop streaming client; `runner`: cases and rows; `agreement`: the virtual-clock check;
- `plots`: the PNG; `cli`: the command.

See docs/benchmarks.md ("Peers (wall clock)").
"""
