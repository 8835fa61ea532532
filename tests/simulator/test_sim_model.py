"""The latency model on the virtual clock, against hand-computed expectations.

Defaults used below: prefill 30 ms per step + 0.25 ms per uncached prompt token, decode 12 ms at batch 1 growing
linearly to 24 ms at max_num_seqs, LoRA load 50 ms, blocks of 16 tokens, 1 token = 4 bytes of text.
"""

from __future__ import annotations

import pytest

from simulator import InvalidRequestError, Prompt, Request, ServerConfig, ServerModel, UnknownModelError, VirtualClock


def text_of_tokens(tokens: int, fill: str = "a") -> str:
    return fill * (4 * tokens)


def make(
    config: ServerConfig = ServerConfig(), adapters: dict[str, str] | None = None
) -> tuple[VirtualClock, ServerModel]:
    clock = VirtualClock()
    return clock, ServerModel(clock, config, adapters=adapters, name="sim")


def test_single_request_ttft_and_e2e():
    clock, server = make()
    request = server.submit(Prompt.from_text(text_of_tokens(1000)), max_tokens=10)
    clock.run_until_idle()
    assert request.ttft == pytest.approx(0.030 + 1000 * 0.00025)  # 0.280
    assert request.e2e == pytest.approx(0.280 + 9 * 0.012)  # 0.388
    assert request.output_tokens == 10 and request.finish_reason == "length"
    assert request.itl_gaps() == pytest.approx([0.012] * 9)
    assert request.queue_time == 0 and request.cached_tokens == 0
    assert server.idle and server.kv.used_blocks() == 0


def test_requests_queue_when_max_num_seqs_is_full():
    clock, server = make(ServerConfig(max_num_seqs=2))
    first, second, third = (server.submit(Prompt.from_text(text_of_tokens(400, fill)), 10) for fill in "abc")
    clock.run_until(0.1)
    gauges = server.gauges()
    assert (gauges.waiting, gauges.running) == (1, 2)
    clock.run_until_idle()
    # The first two prefill together: 30 ms + 800 tokens x 0.25 ms; decode at full batch (2 of 2) takes 24 ms.
    assert first.ttft == pytest.approx(0.230) and second.ttft == pytest.approx(0.230)
    assert first.e2e == pytest.approx(0.230 + 9 * 0.024)  # 0.446
    # The third waits for a free slot, then prefills alone and decodes alone.
    assert third.queue_time == pytest.approx(0.446)
    assert third.ttft == pytest.approx(0.446 + 0.030 + 0.100)
    assert third.e2e == pytest.approx(0.576 + 9 * 0.012)


def test_prefix_cache_reuse_lowers_ttft_and_counts_cached_tokens():
    clock, server = make()
    shared = "You are a helpful assistant. " * 200  # 5800 bytes
    first = server.submit(Prompt.from_text(shared[:4000]), 5)
    clock.run_until_idle()
    second = server.submit(Prompt.from_text(shared[:4000] + shared[:400]), 5)
    clock.run_until_idle()
    assert first.cached_tokens == 0
    # 4000 bytes = 1000 tokens = 62 full blocks of 16 tokens; the second prompt (1100 tokens) reuses all 62.
    assert second.cached_tokens == 992
    assert second.ttft == pytest.approx(0.030 + (1100 - 992) * 0.00025)
    assert first.ttft == pytest.approx(0.030 + 1000 * 0.00025)
    assert (server.stats.prefix_cache_hits, server.stats.prefix_cache_queries) == (992, 2100)


def test_fully_cached_prompt_still_computes_its_last_token():
    clock, server = make()
    prompt = Prompt.from_text(text_of_tokens(32))  # exactly two blocks
    server.submit(prompt, 1)
    clock.run_until_idle()
    again = server.submit(prompt, 1)
    clock.run_until_idle()
    assert again.cached_tokens == 16  # like vLLM: at most prompt - 1 tokens come from the cache
    assert again.ttft == pytest.approx(0.030 + 16 * 0.00025)


def test_lru_eviction_takes_the_tail_of_the_least_recent_prompt_first():
    clock, server = make(ServerConfig(num_gpu_blocks=100))
    reused = Prompt.from_text(text_of_tokens(640, "a"))  # 40 full blocks, + 1 block for 16 output tokens
    server.submit(reused, 16)
    clock.run_until_idle()
    assert server.kv.cached_blocks() == 40 and server.kv.used_blocks() == 0
    # 60 empty blocks left; this one needs 61 (960 + 16 tokens): one cached block must go, the tail one.
    other = server.submit(Prompt.from_text(text_of_tokens(960, "b")), 16)
    clock.run_until(other.arrival + 0.3)  # prefilled after 0.27 s, finished after 0.45 s
    assert other.first_token_at is not None and other.finished_at is None
    assert server.gauges().kv_cache_usage == pytest.approx(61 / 100)
    clock.run_until_idle()
    hit = server.submit(reused, 16)
    clock.run_until_idle()
    assert hit.cached_tokens == 39 * 16
    # A prompt needing every block evicts all cached content.
    server.submit(Prompt.from_text(text_of_tokens(1584, "c")), 16)
    clock.run_until_idle()
    miss = server.submit(reused, 16)
    clock.run_until_idle()
    assert miss.cached_tokens == 0


def test_request_waits_for_kv_blocks_and_blocks_the_queue_behind_it():
    clock, server = make(ServerConfig(num_gpu_blocks=100))
    big = server.submit(Prompt.from_text(text_of_tokens(1200, "a")), 16)  # 76 blocks
    blocked = server.submit(Prompt.from_text(text_of_tokens(800, "b")), 16)  # 51 blocks: does not fit beside it
    small = server.submit(Prompt.from_text(text_of_tokens(16, "c")), 16)  # 2 blocks: fits, but queued behind
    clock.run_until(0.5)
    assert (server.gauges().running, server.gauges().waiting) == (1, 2)
    clock.run_until_idle()
    assert blocked.admitted_at == pytest.approx(big.finished_at)
    assert small.admitted_at == pytest.approx(big.finished_at)


def test_lora_load_cost_and_slot_limit():
    clock, server = make(ServerConfig(max_loras=1), adapters={"ad1": "/lora/ad1", "ad2": "/lora/ad2"})
    prompt = Prompt.from_text(text_of_tokens(400))
    first = server.submit(prompt, 4, model="ad1")
    second = server.submit(prompt, 4, model="ad2")
    base = server.submit(Prompt.from_text(text_of_tokens(400, "z")), 4)
    clock.run_until(0.1)
    gauges = server.gauges()
    assert (gauges.running, gauges.waiting) == (2, 1)
    assert gauges.running_adapters == ("ad1",) and gauges.waiting_adapters == ("ad2",)
    clock.run_until_idle()
    # ad1 and the base request prefill together (800 tokens) and ad1 is loaded (50 ms); ad2 is skipped, not blocking.
    assert first.ttft == pytest.approx(0.030 + 0.200 + 0.050)
    assert base.ttft == pytest.approx(0.280)
    # ad2 waits for ad1's slot, then pays its own load; both first requests decode at batch 2.
    decode_batch2 = 0.012 * (1 + 1 / 15)
    assert second.admitted_at == pytest.approx(0.280 + 3 * decode_batch2)
    assert second.ttft == pytest.approx(second.admitted_at + 0.030 + 0.100 + 0.050)
    # ad2 is resident now: no load cost the next time.
    again = server.submit(Prompt.from_text(text_of_tokens(400, "y")), 4, model="ad2")
    clock.run_until_idle()
    assert again.ttft == pytest.approx(0.130)


def test_lora_requests_info_series_are_stamped_with_the_clock():
    clock = VirtualClock(epoch=1_000_000.0)
    server = ServerModel(clock, ServerConfig(max_loras=1), adapters={"ad1": "/a", "ad2": "/b"})
    clock.run_until(0.01)
    server.submit(Prompt.from_text(text_of_tokens(40)), 4, model="ad1")
    server.submit(Prompt.from_text(text_of_tokens(40)), 4, model="ad2")
    clock.run_until(0.06)
    series = {
        (s.labels["running_lora_adapters"], s.labels["waiting_lora_adapters"]): s.value
        for s in server.gauge_samples()
        if s.name == "vllm:lora_requests_info"
    }
    assert series[("ad1", "ad2")] == pytest.approx(1_000_000.01)
    assert series[("", "")] == pytest.approx(1_000_000.0)
    assert series[("", "ad1,ad2")] == pytest.approx(1_000_000.01)  # both queued before the engine's first step
    assert max(series, key=series.get) == ("ad1", "ad2")  # the newest series is the current state
    assert all(s.labels["max_lora"] == "1" for s in server.gauge_samples() if s.name == "vllm:lora_requests_info")


def test_inter_token_latency_grows_with_the_batch():
    def itl_with(batch: int) -> float:
        clock, server = make()
        requests = [server.submit(Prompt.from_text(text_of_tokens(64, chr(97 + i))), 20) for i in range(batch)]
        clock.run_until_idle()
        return requests[0].itl_percentile(50)

    assert itl_with(1) == pytest.approx(0.012)
    assert itl_with(9) == pytest.approx(0.012 * (1 + 8 / 15))
    assert itl_with(16) == pytest.approx(0.024)


def test_prefill_of_a_newcomer_delays_the_running_decode():
    clock, server = make()
    running = server.submit(Prompt.from_text(text_of_tokens(400, "a")), 50)
    newcomer = []
    clock.call_at(0.2, lambda: newcomer.append(server.submit(Prompt.from_text(text_of_tokens(400, "b")), 5)))
    clock.run_until_idle()
    # running: first token at 0.130, then 12 ms steps; the newcomer arrives at 0.2 and joins at the next step
    # boundary (0.130 + 6 x 0.012 = 0.202); that step decodes one token and prefills 400 tokens.
    shared_step = 0.012 + 0.030 + 0.100
    assert newcomer[0].queue_time == pytest.approx(0.002)
    assert newcomer[0].ttft == pytest.approx(0.002 + shared_step)
    assert running.itl_gaps()[6] == pytest.approx(shared_step)
    assert running.itl_gaps()[7] == pytest.approx(0.012 * (1 + 1 / 15))


def test_long_prompts_are_prefilled_in_chunks():
    clock, server = make(ServerConfig(max_num_batched_tokens=1000))
    request = server.submit(Prompt.from_text(text_of_tokens(2500)), 2)
    clock.run_until_idle()
    assert request.ttft == pytest.approx(3 * 0.030 + 2500 * 0.00025)


def test_output_tokens_option_stops_early():
    clock, server = make()
    request = server.submit(Prompt.from_text("hello"), max_tokens=100, output_tokens=7)
    clock.run_until_idle()
    assert request.output_tokens == 7 and request.finish_reason == "stop"
    assert server.stats.generation_tokens == 7


def test_requests_that_can_never_run_are_refused():
    _clock, server = make(ServerConfig(max_model_len=1000, num_gpu_blocks=20))
    with pytest.raises(InvalidRequestError, match="maximum context length is 1000"):
        server.submit(Prompt.from_text(text_of_tokens(990)), 20)
    with pytest.raises(InvalidRequestError, match="KV cache blocks"):
        server.submit(Prompt.from_text(text_of_tokens(400)), 20)
    with pytest.raises(UnknownModelError):
        server.submit(Prompt.from_text("hi"), 5, model="no-such-model")
    with pytest.raises(InvalidRequestError):
        server.submit(Prompt.from_text(""), 5)
    assert server.idle


def test_abort_removes_a_waiting_request_without_callbacks():
    clock, server = make(ServerConfig(max_num_seqs=1))
    finished = []
    server.submit(Prompt.from_text("first"), 5, on_finish=finished.append)
    doomed = server.submit(Prompt.from_text("second"), 5, on_finish=finished.append)
    server.abort(doomed)
    assert server.gauges().waiting == 1
    clock.run_until_idle()
    assert [r.id for r in finished] == [1] and doomed.aborted and doomed.output_tokens == 0


def test_abort_of_a_running_request_frees_its_blocks():
    clock, server = make()
    request = server.submit(Prompt.from_text(text_of_tokens(100)), 1000)
    clock.run_until(1.0)
    assert server.kv.used_blocks() > 0
    server.abort(request)
    clock.run_until_idle()
    assert server.kv.used_blocks() == 0 and server.idle and request.output_tokens < 1000


def test_a_request_submitted_from_a_finish_callback_starts_at_once():
    clock, server = make()
    follow_up = []

    def chain(done):
        follow_up.append(server.submit(Prompt.from_text(text_of_tokens(40, "b")), 3))

    first = server.submit(Prompt.from_text(text_of_tokens(40)), 3, on_finish=chain)
    clock.run_until_idle()
    assert follow_up[0].admitted_at == first.finished_at
    assert follow_up[0].ttft == pytest.approx(0.030 + 40 * 0.00025)


def test_streaming_requests_get_a_callback_per_step():
    clock, server = make()
    seen = []
    server.submit(Prompt.from_text("stream me"), 5, on_tokens=lambda r: seen.append((clock.now(), r.output_tokens)))
    clock.run_until_idle()
    assert [tokens for _, tokens in seen] == [1, 2, 3, 4]  # the fifth token comes with on_finish
    assert [t for t, _ in seen] == pytest.approx([0.030 + 3 * 0.00025 + i * 0.012 for i in range(4)])


def test_a_failing_callback_does_not_stall_other_requests():
    clock, server = make()

    def explode(_):
        raise RuntimeError("boom")

    server.submit(Prompt.from_text("a"), 2, on_finish=explode)
    survivor = server.submit(Prompt.from_text("b" * 400), 30)
    with pytest.raises(RuntimeError, match="boom"):
        clock.run_until_idle()
    clock.run_until_idle()
    assert survivor.output_tokens == 30 and server.idle


def test_a_fleet_run_is_deterministic_and_conserves_tokens():
    def run() -> list[tuple]:
        clock = VirtualClock()
        fleet = [ServerModel(clock, ServerConfig(max_num_seqs=4), name=f"s{i}") for i in range(4)]
        done = []
        for i in range(200):
            prompt = Prompt.from_segments([(f"system-{i % 5}", 700), (f"user-{i}", 100 + i)])
            clock.call_at(i * 0.05, fleet[i % 4].submit, prompt, 20 + i % 7, None, done.append)
        clock.run_until_idle()
        assert sum(s.stats.generation_tokens for s in fleet) == sum(r.output_tokens for r in done)
        return [(r.id, r.first_token_at, r.finished_at, r.cached_tokens) for r in done]

    first = run()
    assert len(first) == 200 and first == run()
    assert sum(cached for *_, cached in first) > 0


def test_without_latency_everything_happens_at_time_zero():
    clock, server = make(ServerConfig(max_num_seqs=2).without_latency())
    steps = []
    requests = [server.submit(Prompt.from_text("x" * 400), 50, on_tokens=steps.append) for _ in range(3)]
    clock.run_until_idle()
    assert clock.now() == 0 and all(r.e2e == 0 and r.output_tokens == 50 for r in requests)
    assert requests[2].admitted_at == 0 and len(steps) == 3 * 49


def test_metrics_page_is_rendered_again_only_when_what_it_shows_changed():
    from prometheus_client import generate_latest

    from simulator.metrics import MetricsPage

    clock, server = make(ServerConfig(max_loras=2))
    page = MetricsPage(server)
    idle = page.render()
    assert page.render() == idle and page.renders == 1  # unchanged: served from the cache
    names = ["vllm:num_requests_running", "vllm:cache_config_info"]
    selected = page.render(names).decode()
    assert page.renders == 2
    assert [line.split("{")[0] for line in selected.splitlines() if not line.startswith("#")] == names

    server.submit(Prompt.from_text(text_of_tokens(1000)), max_tokens=50)
    clock.run_until(clock.now() + 0.4)  # prefilled, decoding
    busy = page.render()
    assert busy != idle and busy == generate_latest(page.registry)
    assert 'vllm:num_requests_running{engine="0",model_name=' in busy.decode()
    assert page.render(names) != selected.encode()
    renders = page.renders
    clock.run_until_idle()
    assert page.render() == generate_latest(page.registry) and page.renders == renders + 1  # counters moved on


@pytest.mark.parametrize("stream", [False, True])
def test_first_token_forecast_is_exact_until_the_next_arrival(stream):
    clock = VirtualClock()
    server = ServerModel(clock, ServerConfig(max_num_seqs=4, max_num_batched_tokens=512), name="sim")
    forecasts: list[tuple[float, Request]] = []
    arrivals = []

    def arrive(i: int) -> None:
        prompt = Prompt.from_segments([(f"system-{i % 3}", 900), (f"user-{i}", 50 + 61 * (i % 11))])
        output = 5 + 29 * (i % 7)
        forecast = server.first_token_forecast(prompt, output)
        arrivals.append(clock.now())
        request = server.submit(prompt, output, on_tokens=(lambda r: None) if stream else None)
        forecasts.append((forecast, request))

    for i in range(120):
        clock.call_at(i * 0.7 + (i % 5) * 0.3, arrive, i)
    clock.run_until_idle()
    checked = 0
    for (forecast, request), next_arrival in zip(forecasts, arrivals[1:] + [float("inf")]):
        assert forecast <= request.first_token_at + 1e-9 or next_arrival < request.first_token_at
        if request.first_token_at <= next_arrival:  # nothing arrived before its first token: the forecast holds
            assert forecast == pytest.approx(request.first_token_at)
            checked += 1
    assert checked >= 100
    # the replay saw slot waits, reused prefixes and prompts prefilled in chunks
    assert sum(request.queue_time > 0.05 for _, request in forecasts) >= 20
    assert sum(request.cached_tokens > 0 for _, request in forecasts) >= 100
    assert sum(request.prompt_tokens - request.cached_tokens > 512 for _, request in forecasts) >= 20
