"""Benchmarks that print numbers: `poolgate bench picker | routing | overhead | control-plane | faults`."""
