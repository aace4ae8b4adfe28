"""One request passing through the edge middleware, as a single object on the hot path.

It counts the request body as it arrives (413 past the limit), adds the edge's headers to the
answer, remembers its status and start time, and cancels the request's task when the deadline
passes. One allocation per request instead of a wrapper, a closure and a timer object each.
"""

import asyncio
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
        "_timer",
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
        timeout_seconds: float,
    ) -> None:
        self.start = perf_counter()
        self.status = 0  # until the response starts
        self._receive = receive
        self._send = send
        self.extra = extra
        self.request_id_header = (b"x-request-id", request_id.encode())
        self.limit = max_body_bytes
        self.received = 0
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("an Exchange needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        # One timer handle: `asyncio.timeout` costs about four times as much on every request.
        self._timer = asyncio.get_running_loop().call_later(timeout_seconds, self._expire)

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
        """Stop the deadline's timer: the request is over."""
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def deadline_caused(self) -> bool:
        """After a CancelledError: True when it came from the deadline alone.

        Then the cancellation is consumed (the task may go on to answer); if someone else
        cancelled the task too (e.g. the server shutting down), it must propagate.
        """
        return self.expired and self._task.uncancel() <= self._cancelling
