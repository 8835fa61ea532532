"""Helpers shared by integration and end-to-end tests: real processes and ports on loopback, ext_proc clients."""
