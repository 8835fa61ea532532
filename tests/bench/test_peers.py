"""The peers benchmark's pure parts: shapes, the SSE parser, row fields (the wall-clock run is in e2e/)."""

from __future__ import annotations

import orjson
import pytest

from poolgate.bench.peers.client import content_event
from poolgate.bench.peers.runner import Settings, pods_per_group, row, workload
from poolgate.bench.peers.shapes import GROUPS, QUESTION_TOKENS, SHAPES
from poolgate.bench.routing.fleet import RequestRecord
from simulator.protocol import parse_generation


def test_every_shape_has_its_prompt_and_output_lengths():
    assert len(SHAPES) == 9
    for name, shape in SHAPES.items():
        turns = [turns[0] for turns, _ in zip(shape.spec().content(0), range(200), strict=False)]
        assert all(turn.output_tokens == shape.output_tokens == turn.body["max_tokens"] for turn in turns)
        assert all(turn.body["stream"] for turn in turns)
        firsts = [turn.body["messages"][0] for turn in turns]
        if shape.system_tokens:
            systems = {m["content"] for m in firsts}
            assert all(m["role"] == "system" and len(m["content"]) == 4 * shape.system_tokens for m in firsts)
            assert 20 < len(systems) <= GROUPS, name  # 200 draws over 32 groups
            assert all(len(turn.body["messages"][1]["content"]) == 4 * QUESTION_TOKENS for turn in turns)
        else:
            assert all(m["role"] == "user" for m in firsts) and len({m["content"] for m in firsts}) == 200
        prompt = parse_generation(orjson.dumps(turns[0].body), chat=True).prompt
        assert prompt.num_tokens >= (shape.system_tokens + QUESTION_TOKENS if shape.system_tokens else 16)


def test_the_request_sequence_is_the_same_for_every_system_and_rate():
    settings = Settings(shapes=["prefix-6k-out64"], duration=20.0)
    first, again = workload("prefix-6k-out64", settings), workload("prefix-6k-out64", settings)
    assert [s.turns[0].body for s in first.sessions] == [s.turns[0].body for s in again.sessions]
    slower = workload("prefix-6k-out64", Settings(shapes=["prefix-6k-out64"], duration=20.0, load=0.4))
    assert slower.rate == pytest.approx(first.rate / 2)
    assert [s.turns[0].body for s in slower.sessions] == [
        s.turns[0].body for s in first.sessions[: len(slower.sessions)]
    ]


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="shapes must be among"):
        Settings(shapes=["prefix-9k"])
    with pytest.raises(ValueError, match="systems must be among"):
        Settings(shapes=["no-prefix-out64"], systems=["nginx"])
    with pytest.raises(ValueError, match="load"):
        Settings(shapes=["no-prefix-out64"], load=0)


def test_content_events_are_told_from_the_role_chunk_usage_and_done():
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
    token = b'data: {"choices":[{"index":0,"delta":{"content":"lorem "}}]}'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}'
    assert content_event(token) is True
    assert content_event(role) is False and content_event(usage) is False and content_event(b"\n") is False
    assert content_event(b"data: [DONE]\n") is None and content_event(b"data: {broken") is False


def test_a_row_from_records():
    settings = Settings(shapes=["prefix-6k-out64"], systems=["envoy"], duration=10.0, warmup_fraction=0.2)
    work = workload("prefix-6k-out64", settings)
    records = []
    for index, session in enumerate(work.sessions):
        record = RequestRecord(index, 0, session.start, endpoint=f"10.0.0.{index % 2}:8000")
        record.first_token_at = session.start + 0.5
        record.itl_runs = [[0.02, 1]] * 63
        record.output_tokens = 64
        record.finished_at = record.first_token_at + 63 * 0.02
        records.append(record)
    records[-1].outcome = "unfinished"
    result = row("prefix-6k-out64", "envoy", settings, work, records, (10.0, 100.0), (70.0, 200.0))
    measured = sum(1 for s in work.sessions if s.start >= 2.0)
    assert result["ttft_p50_s"] == result["ttft_p99_s"] == 0.5 and result["itl_p90_s"] == 0.02
    assert result["completed"] == measured - 1 and result["errors"] == result["unfinished"] == 1
    assert result["prefix_hit_rate"] == 0.6 and 1 <= result["pods_per_group"] <= 2
    assert pods_per_group(work, []) is None
