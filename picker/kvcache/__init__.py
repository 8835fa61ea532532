"""Precise prefix-cache state from the engines' KV-cache events (vLLM's ZMQ publisher; SGLang's array form).

- `events`: decoding of one ZMQ message (topic, sequence number, msgpack payload) into typed events;
- `index`: per endpoint, the blocks it caches, keyed from the events' token IDs, with per-endpoint reliability;
- `subscriber`: the ZMQ subscription thread (connect and bind layouts, replay on a gap).
"""
