"""The ZMQ subscription thread that feeds a BlockIndex from the engines' KV-event streams.

Two layouts, as vLLM's `--kv-events-config` allows:
- connect (`add(EventSource(...))`): each engine binds (`tcp://*:PORT`) and the picker connects one SUB socket to
  each endpoint's `tcp://ip:PORT`;
- bind (`bind="tcp://*:PORT"`): the picker binds one SUB socket and every engine connects to it; a message's endpoint
  comes from its topic (`kv@<pod>@<model>`) through `resolve_topic`.

Every message is checked against the endpoint's sequence (see `picker.kvcache.index`). On a gap, when the source has
a replay endpoint (vLLM's `replay_endpoint`, a ROUTER socket), the missing messages are fetched first: the request is
`["", start sequence (8 bytes big-endian)]`, the answers `["", sequence, payload]` up to an end marker of sequence -1;
a replay that does not start at the wanted sequence leaves the endpoint unreliable. A malformed message also makes
its endpoint unreliable. Nothing here raises into the scheduler: the index only changes state.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from picker.kvcache.events import EventBatch, EventFormatError, decode_message
from picker.kvcache.index import BlockIndex

log = logging.getLogger(__name__)

_END_OF_REPLAY = -1
POLL_INTERVAL_MS = 5_000  # a safety net only: commands and stop wake the poll at once


@dataclass(frozen=True, slots=True)
class EventSource:
    """Where one endpoint's events come from in the connect layout (`replay`: its replay endpoint, if any)."""

    endpoint: str
    address: str
    replay: str | None = None


class KVEventSubscriber:
    """Subscribes to KV-event streams on a background thread and applies them to `index`."""

    def __init__(
        self,
        index: BlockIndex,
        *,
        topic_filter: str = "kv@",
        bind: str | None = None,
        resolve_topic: Callable[[str], str | None] | None = None,
        replay_timeout: float = 1.0,
        receive_buffer: int = 10_000,
    ) -> None:
        if bind is not None and resolve_topic is None:
            raise ValueError("the bind layout needs resolve_topic to tell endpoints apart")
        self.index = index
        self.topic_filter = topic_filter.encode()
        self.bind = bind
        self.resolve_topic = resolve_topic
        self.replay_timeout = replay_timeout
        self.receive_buffer = receive_buffer
        self.malformed = 0  # messages that could not be decoded
        self.unmatched = 0  # bind layout: messages whose topic names no endpoint
        self._context: zmq.Context = zmq.Context.instance()
        self._commands: queue.SimpleQueue[tuple[str, EventSource | str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        # the thread sleeps in its poll until a message or a wake-up byte arrives: no periodic wake-ups (a picker's
        # tests and a process with many pools would otherwise pay 20 GIL round trips a second per subscriber)
        self._wake_address = f"inproc://kv-events-wake-{id(self)}"
        self._waker: zmq.Socket | None = None
        self._waker_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._bind_error: Exception | None = None

    def start(self) -> None:
        """Start the subscription thread (for the bind layout, returns once the socket is bound)."""
        self._thread = threading.Thread(target=self._run, name="kv-events", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)
        if self._bind_error is not None:
            raise self._bind_error

    def stop(self) -> None:
        """Close every socket and end the thread."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._waker_lock:
            if self._waker is not None:
                self._waker.close(0)
                self._waker = None

    @property
    def running(self) -> bool:
        """Whether the subscription thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def add(self, source: EventSource) -> None:
        """Subscribe to one endpoint's stream (connect layout); the index trusts it from its first message at 0."""
        self.index.endpoint(source.endpoint)
        self._commands.put(("add", source))
        self._wake()

    def remove(self, endpoint: str) -> None:
        """Unsubscribe from an endpoint and drop its index."""
        self._commands.put(("remove", endpoint))
        self._wake()

    def _wake(self) -> None:
        """Interrupt the thread's poll so that it reads its commands (or its stop)."""
        with self._waker_lock:
            if self._waker is None:
                self._waker = self._context.socket(zmq.PAIR)
                self._waker.setsockopt(zmq.LINGER, 0)
                self._waker.setsockopt(zmq.SNDHWM, 1)
                self._waker.connect(self._wake_address)
            try:
                self._waker.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # a wake-up is already pending

    # -- the thread -----------------------------------------------------------------------------------------------------

    def _socket(self) -> zmq.Socket:
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.RCVHWM, self.receive_buffer)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, self.topic_filter)
        return socket

    def _run(self) -> None:
        poller = zmq.Poller()
        sockets: dict[zmq.Socket, EventSource | None] = {}
        by_endpoint: dict[str, zmq.Socket] = {}
        wake = self._context.socket(zmq.PAIR)
        wake.setsockopt(zmq.LINGER, 0)
        wake.bind(self._wake_address)
        poller.register(wake, zmq.POLLIN)
        try:
            if self.bind is not None:
                try:
                    bound = self._socket()
                    bound.bind(self.bind)
                except zmq.ZMQError as error:
                    self._bind_error = OSError(f"cannot bind the KV-event socket {self.bind}: {error}")
                    return
                sockets[bound] = None
                poller.register(bound, zmq.POLLIN)
            self._ready.set()
            while not self._stop.is_set():
                self._run_commands(poller, sockets, by_endpoint)
                for socket, _ in poller.poll(POLL_INTERVAL_MS):
                    if socket is wake:
                        while _drained(wake):
                            pass
                        continue
                    while True:
                        try:
                            frames = socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(sockets.get(socket), frames)
        finally:
            self._ready.set()
            wake.close(0)
            for socket in sockets:
                socket.close(0)

    def _run_commands(
        self, poller: zmq.Poller, sockets: dict[zmq.Socket, EventSource | None], by_endpoint: dict[str, zmq.Socket]
    ) -> None:
        while True:
            try:
                command, argument = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "add":
                assert isinstance(argument, EventSource)
                if argument.endpoint in by_endpoint:
                    continue
                socket = self._socket()
                socket.connect(argument.address)
                sockets[socket] = argument
                by_endpoint[argument.endpoint] = socket
                poller.register(socket, zmq.POLLIN)
            else:
                assert isinstance(argument, str)
                if argument in by_endpoint:
                    closing = by_endpoint.pop(argument)
                    poller.unregister(closing)
                    del sockets[closing]
                    closing.close(0)
                self.index.remove_endpoint(argument)

    def _handle(self, source: EventSource | None, frames: list[bytes]) -> None:
        endpoint = source.endpoint if source is not None else self._resolve(frames[0] if frames else b"")
        if endpoint is None:
            self.unmatched += 1
            return
        try:
            batch = decode_message(frames)
        except EventFormatError as error:
            self.malformed += 1
            self.index.mark_unreliable(endpoint, f"malformed KV-event message: {error}")
            return
        if source is not None and source.replay and self.index.check_sequence(endpoint, batch.seq) == "gap":
            self._fill_gap(source, batch.seq)
        self.index.ingest(endpoint, batch)

    def _resolve(self, topic: bytes) -> str | None:
        assert self.resolve_topic is not None
        return self.resolve_topic(topic.decode("utf-8", "replace"))

    def _fill_gap(self, source: EventSource, until: int) -> None:
        state = self.index.endpoint(source.endpoint)
        start = state.next_seq if (state.next_seq is not None and not state.unreliable) else 0
        batches = self._replay(source, start, until)
        if batches is None:
            return
        if start == 0:
            self.index.replace(source.endpoint, batches)
        else:
            self.index.apply_replayed(source.endpoint, batches)

    def _replay(self, source: EventSource, start: int, until: int) -> list[EventBatch] | None:
        """Messages start..until-1 from the source's replay endpoint, or None if they cannot all be had."""
        assert source.replay is not None
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        batches: list[EventBatch] = []
        try:
            dealer.connect(source.replay)
            dealer.send_multipart([b"", start.to_bytes(8, "big")])
            expected = start
            while dealer.poll(int(self.replay_timeout * 1000)):
                frames = dealer.recv_multipart()
                if len(frames) != 3:
                    return None
                seq = int.from_bytes(frames[1], "big", signed=True)
                if seq == _END_OF_REPLAY:
                    break
                if seq >= until:
                    continue
                if seq != expected:  # the replay buffer no longer holds what was missed
                    return None
                batches.append(decode_message([b"", frames[1], frames[2]]))
                expected += 1
            return batches if expected == until else None
        except (zmq.ZMQError, EventFormatError) as error:
            log.warning("replay from %s failed: %s", source.replay, error)
            return None
        finally:
            dealer.close(0)


def _drained(socket: zmq.Socket) -> bool:
    """Read one pending message off `socket` without waiting; False when none was pending."""
    try:
        socket.recv(zmq.NOBLOCK)
    except zmq.Again:
        return False
    return True
