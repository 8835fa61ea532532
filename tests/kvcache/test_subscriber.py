"""The KV-event subscriber against real ZMQ publishers that send the reference vLLM messages."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

from picker.kvcache.events import BlockStored, decode_message
from picker.kvcache.index import BlockIndex, request_keys
from picker.kvcache.subscriber import EventSource, KVEventSubscriber
from tests.kvcache.reference import reference_messages

LORA_STREAM = reference_messages()[1:5]  # one engine's messages, sequences 0..3


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lora_prefix_keys() -> list[int]:
    first, child = (decode_message(LORA_STREAM[i]).events[0] for i in (0, 2))
    assert isinstance(first, BlockStored) and isinstance(child, BlockStored)
    return request_keys(first.token_ids + child.token_ids, 128, lora_name="lora1")


class Publisher:
    """A vLLM-like publisher: a PUB socket (bound or connecting) and, optionally, a ROUTER replay socket that
    answers `["", start]` with the buffered messages from `start` and an end marker, as vLLM's does."""

    def __init__(
        self, context: zmq.Context, *, connect: str | None = None, replay: bool = False, buffer: int = 0
    ) -> None:
        self.pub = context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        if buffer:  # a small queue and kernel buffer, so that a stalled subscriber loses messages quickly
            self.pub.setsockopt(zmq.SNDHWM, buffer)
            self.pub.setsockopt(zmq.SNDBUF, 4096)
        if connect:
            self.pub.connect(connect)
            self.address = connect
        else:
            port = self.pub.bind_to_random_port("tcp://127.0.0.1")
            self.address = f"tcp://127.0.0.1:{port}"
        self.sent: list[list[bytes]] = []
        self.replay_address: str | None = None
        self._stop = threading.Event()
        if replay:
            router = context.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            self.replay_address = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
            self._thread = threading.Thread(target=self._serve_replay, args=(router,), daemon=True)
            self._thread.start()

    def _serve_replay(self, router: zmq.Socket) -> None:
        while not self._stop.is_set():
            if not router.poll(20):
                continue
            client, _, start = router.recv_multipart()
            for _topic, seq, payload in list(self.sent):
                if int.from_bytes(seq, "big") >= int.from_bytes(start, "big"):
                    router.send_multipart([client, b"", seq, payload])
            router.send_multipart([client, b"", (-1).to_bytes(8, "big", signed=True), b""])
        router.close(0)

    def send(self, frames: list[bytes], *, deliver: bool = True) -> None:
        self.sent.append(frames)
        if deliver:
            self.pub.send_multipart(frames)

    def close(self) -> None:
        self._stop.set()
        if self.replay_address:
            self._thread.join()
        self.pub.close(0)


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.term()


def send_until_subscribed(publisher: Publisher, index: BlockIndex, endpoint: str) -> None:
    """PUB/SUB drops messages until the subscription has propagated: resend seq 0 until it is seen."""
    eventually(lambda: publisher.pub.send_multipart(LORA_STREAM[0]) or index.endpoint(endpoint).next_seq == 1)
    publisher.sent.append(LORA_STREAM[0])


def test_connect_layout_indexes_a_published_stream(context):
    publisher = Publisher(context)
    index = BlockIndex()
    subscriber = KVEventSubscriber(index)
    subscriber.start()
    try:
        subscriber.add(EventSource("10.0.0.1:8000", publisher.address))
        send_until_subscribed(publisher, index, "10.0.0.1:8000")
        for frames in LORA_STREAM[1:]:
            publisher.send(frames)
        eventually(lambda: index.endpoint("10.0.0.1:8000").next_seq == 4)
        assert index.reliable("10.0.0.1:8000")
        assert index.matched_blocks(lora_prefix_keys(), ["10.0.0.1:8000"], 0.0) == {"10.0.0.1:8000": 2}
        subscriber.remove("10.0.0.1:8000")
        eventually(lambda: index.block_count("10.0.0.1:8000") == 0 and not index.reliable("10.0.0.1:8000"))
    finally:
        subscriber.stop()
        publisher.close()


def test_bind_layout_tells_endpoints_apart_by_topic(context):
    index = BlockIndex()
    address = f"tcp://127.0.0.1:{free_port()}"
    subscriber = KVEventSubscriber(
        index, bind=address, resolve_topic=lambda topic: {"127.0.0.1": "pod-a:8000"}.get(topic.split("@")[1])
    )
    subscriber.start()
    publisher = Publisher(context, connect=address)
    try:
        send_until_subscribed(publisher, index, "pod-a:8000")
        publisher.send(LORA_STREAM[1])
        publisher.send(LORA_STREAM[2])
        publisher.send([b"kv@unknown@tiny", *LORA_STREAM[3][1:]])
        eventually(lambda: subscriber.unmatched == 1)
        assert index.endpoint("pod-a:8000").next_seq == 3 and index.reliable("pod-a:8000")
        assert index.matched_blocks(lora_prefix_keys(), ["pod-a:8000"], 0.0) == {"pod-a:8000": 2}
    finally:
        subscriber.stop()
        publisher.close()


def test_a_gap_is_refilled_from_the_replay_endpoint(context):
    publisher = Publisher(context, replay=True)
    index = BlockIndex()
    subscriber = KVEventSubscriber(index)
    subscriber.start()
    try:
        subscriber.add(EventSource("e:1", publisher.address, publisher.replay_address))
        send_until_subscribed(publisher, index, "e:1")
        publisher.send(LORA_STREAM[1], deliver=False)  # lost on the way
        publisher.send(LORA_STREAM[2], deliver=False)
        publisher.send(LORA_STREAM[3])
        eventually(lambda: index.endpoint("e:1").next_seq == 4)
        assert index.reliable("e:1") and index.block_count("e:1") == 6
        assert index.matched_blocks(lora_prefix_keys(), ["e:1"], 0.0) == {"e:1": 2}
    finally:
        subscriber.stop()
        publisher.close()


def test_without_replay_a_gap_or_a_bad_message_leaves_the_endpoint_unreliable_until_a_restart(context):
    publisher = Publisher(context)
    index = BlockIndex()
    subscriber = KVEventSubscriber(index)
    subscriber.start()
    try:
        subscriber.add(EventSource("e:1", publisher.address))
        send_until_subscribed(publisher, index, "e:1")
        publisher.send(LORA_STREAM[2])  # seq 2: seq 1 was lost
        eventually(lambda: not index.reliable("e:1"))
        assert index.endpoint("e:1").unreliable == "missed messages: expected sequence 1, got 2"
        publisher.send(LORA_STREAM[0])  # the engine restarted: sequence 0 again
        eventually(lambda: index.reliable("e:1"))
        publisher.send([LORA_STREAM[1][0], LORA_STREAM[1][1], b"\xc1"])
        eventually(lambda: subscriber.malformed == 1)
        assert index.endpoint("e:1").unreliable.startswith("malformed KV-event message: the payload is not msgpack")
    finally:
        subscriber.stop()
        publisher.close()


def test_a_slow_subscriber_whose_queue_overflows_detects_the_loss(context):
    publisher = Publisher(context, buffer=5)
    index = BlockIndex()
    subscriber = KVEventSubscriber(index, receive_buffer=5)
    subscriber.start()
    try:
        subscriber.add(EventSource("e:1", publisher.address))
        send_until_subscribed(publisher, index, "e:1")
        frames = decode_message(LORA_STREAM[1])
        with index._lock:  # the subscriber's thread stalls on the index while the engine publishes a burst
            for seq in range(1, 3000):
                publisher.send([frames.topic.encode(), seq.to_bytes(8, "big"), LORA_STREAM[1][2]])
        eventually(lambda: not index.reliable("e:1"))
        assert index.endpoint("e:1").unreliable.startswith("missed messages: expected sequence")
    finally:
        subscriber.stop()
        publisher.close()
