"""One request passing through the edge middleware, as a single object on the hot path.

It counts the request body as it arrives (413 past the limit), adds the edge's headers to the
answer, and remembers its status and start time; `Deadlines` cancels its task when the deadline
passes. One allocation per request instead of a wrapper, a closure and a timer object each.
"""

import asyncio
from threading import get_ident
from time import perf_counter

from starlette.types import Message, Receive, Send

from app.core.body_limit import PayloadTooLargeError
from app.core.headers import MANAGED, Header


class Exchange:
    """Pass `receive` and `send` to the app; call `close()` when it is done."""

    __slots__ = (
        "_cancelling",
        "_receive",
        "_send",
        "_task",
        "_watch",
        "deadline",
        "expired",
        "extra",
        "limit",
        "received",
        "request_id_header",
        "start",
        "status",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        extra: list[Header],
        request_id: str,
        *,
        max_body_bytes: int,
        deadlines: "Deadlines",
    ) -> None:
        self.start = perf_counter()
        self.status = 0  # until the response starts
        self._receive = receive
        self._send = send
        self.extra = extra
        self.request_id_header = (b"x-request-id", request_id.encode())
        self.limit = max_body_bytes
        self.received = 0
        watch = deadlines.running()
        task = asyncio.current_task(watch.loop)
        if task is None:
            raise RuntimeError("an Exchange needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        self.deadline = watch.loop.time() + deadlines.timeout
        watch.add(self)
        self._watch = watch

    async def receive(self) -> Message:
        """The server's `receive`, counting body bytes: chunked bodies declare no length."""
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise PayloadTooLargeError(self.limit)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            elapsed = b"%.2fms" % ((perf_counter() - self.start) * 1000)
            headers = message.get("headers", ())
            if MANAGED.isdisjoint(dict(headers)):  # the usual case: nothing to reconcile
                extra = self.extra
            else:  # a header the endpoint chose itself (a stricter CSP, a Cache-Control) wins
                present = {name for name, _ in headers}
                headers = [h for h in headers if h[0] != b"server"]
                extra = [h for h in self.extra if h[0] not in present]
            message["headers"] = [
                *headers,
                *extra,
                self.request_id_header,
                (b"x-response-time", elapsed),
            ]
        await self._send(message)

    def close(self) -> None:
        """The request is over: its deadline no longer applies."""
        self._watch.inflight.pop(self, None)

    def expire(self) -> None:
        """The deadline passed: cancel the request's work."""
        self.expired = True
        self._task.cancel()

    def deadline_caused(self) -> bool:
        """After a CancelledError: True when it came from the deadline alone.

        Then the cancellation is consumed (the task may go on to answer); if someone else
        cancelled the task too (e.g. the server shutting down), it must propagate.
        """
        return self.expired and self._task.uncancel() <= self._cancelling


class Deadlines:
    """Cancels the requests that outlive the timeout, with a single timer per event loop.

    Every request gets the same timeout, so the requests in flight, kept in arrival order, are
    in deadline order too: the timer only ever waits for the oldest one, and is set again when
    it fires. A request costs a dict insert and delete, where a timer of its own (`call_later`,
    `asyncio.timeout`) costs an allocation in the loop, and in uvloop a libuv handle.
    """

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout = timeout_seconds
        self._current: _LoopDeadlines | None = None

    def running(self) -> "_LoopDeadlines":
        """The deadlines of the event loop running in this thread.

        `asyncio.get_running_loop()` makes a system call (`getpid`) every time on Python 3.11.
        A thread runs one loop at a time, so the loop last seen in this thread is still the one
        running here for as long as it runs (unless it was moved to another thread meanwhile,
        which no server does): the loop is asked for only when that changes. A worker has one
        loop; tests start several, and a set left for another loop lives on (its requests and
        its timer hold it) and still enforces its own deadlines.
        """
        current = self._current
        if current is None or current.thread != get_ident() or not current.loop.is_running():
            current = self._current = _LoopDeadlines(asyncio.get_running_loop(), get_ident())
        return current


class _LoopDeadlines:
    """The requests in flight on one event loop, oldest first, and the timer for the oldest."""

    __slots__ = ("inflight", "loop", "thread", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: int) -> None:
        self.loop = loop
        self.thread = thread
        self.inflight: dict[Exchange, None] = {}
        self.timer: asyncio.TimerHandle | None = None

    def add(self, exchange: Exchange) -> None:
        """Watch the exchange, whose `deadline` is set (in this loop's clock)."""
        self.inflight[exchange] = None
        if self.timer is None:  # else it fires at or before this (later) deadline
            self.timer = self.loop.call_at(exchange.deadline, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        expired: list[Exchange] = []
        for exchange in self.inflight:
            if exchange.deadline > now:
                self.timer = self.loop.call_at(exchange.deadline, self._fire)
                break
            expired.append(exchange)
        for exchange in expired:
            del self.inflight[exchange]
            exchange.expire()
