"""taskiq's receiver, except that a message which can never run is acknowledged and recorded.

taskiq 0.12 skips an unreadable message or an unknown task name with a warning and without
acknowledging it, so the stream hands it out again every `idle_timeout`, forever. Here such a
message (or a run request whose argument is not a job id) is logged as `job_message_failed`
with its reason, counted in `jobs_failed_total{job="<unrunnable>"}`, and acknowledged.
"""

import inspect
import uuid
from typing import Final

import structlog
from taskiq import AckableMessage
from taskiq.receiver import Receiver

from app.jobs import metrics
from app.jobs.broker import RUN_JOB

logger = structlog.get_logger("app.jobs")

UNRUNNABLE: Final = "<unrunnable>"  # the `job` label of messages refused here
SHOWN_BYTES: Final = 120  # of an unreadable message, in its log line


def _is_job_id(args: list[object]) -> bool:
    if len(args) != 1 or not isinstance(args[0], str):
        return False
    try:
        uuid.UUID(args[0])
    except ValueError:
        return False
    return True


class JobReceiver(Receiver):
    async def callback(self, message: bytes | AckableMessage, raise_err: bool = False) -> None:
        data = message.data if isinstance(message, AckableMessage) else message
        reason = self.unrunnable(data)
        if reason is None:
            await super().callback(message, raise_err)
            return
        metrics.FAILED.labels(job=UNRUNNABLE).inc()
        logger.error("job_message_failed", reason=reason)
        if isinstance(message, AckableMessage):
            acknowledged = message.ack()
            if inspect.isawaitable(acknowledged):
                await acknowledged

    def unrunnable(self, data: bytes) -> str | None:
        """Why this message can never run, or None when it can."""
        try:
            parsed = self.broker.formatter.loads(message=data)
            parsed.parse_labels()
        except Exception as error:
            return f"unreadable message ({type(error).__name__}): {data[:SHOWN_BYTES]!r}"
        if self.broker.find_task(parsed.task_name) is None:
            return f"unknown job {parsed.task_name!r}"
        if parsed.task_name == RUN_JOB and not _is_job_id(parsed.args):
            return f"not a job id: {parsed.args!r}"[:SHOWN_BYTES]
        return None
