"""The real vLLM 0.32 KV-event messages of shared/reference/vllm-0.32-cpu/kv-events.txt, as 3-frame messages."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path

import msgpack

DUMP = Path(__file__).resolve().parents[3] / "shared" / "reference" / "vllm-0.32-cpu" / "kv-events.txt"
_HEADER = re.compile(r"frames=3 topic=b'([^']*)' seq=(\d+)")


def reference_messages() -> list[list[bytes]]:
    """Each dumped message rebuilt as the frames vLLM sent: topic, 8-byte big-endian sequence, msgpack payload."""
    lines = DUMP.read_text().splitlines()
    messages = []
    for header, decoded in pairwise(lines):
        match = _HEADER.match(header)
        if match and decoded.startswith("decoded="):
            try:
                payload = json.loads(decoded.removeprefix("decoded="))
            except json.JSONDecodeError:  # the dump's last line is cut short
                continue
            topic, seq = match.group(1).encode(), int(match.group(2))
            messages.append([topic, seq.to_bytes(8, "big"), msgpack.packb(payload)])
    return messages
