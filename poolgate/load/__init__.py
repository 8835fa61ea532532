"""Load and faults against a running gateway: the open-loop load generator (`generator`) and the fault scenarios
(`faults`). The benchmarks (`poolgate bench faults`, `overhead`) print their numbers; the e2e reliability tests run
the same scenarios, shorter, and assert on the results."""
