import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utc_now


class OutboxJob(Base):
    """A job recorded in the transaction of the write that asked for it (the transactional outbox).

    `due_at`: when the sweep hands it to the queue (again) unless a worker has finished it;
    `locked_until`: the lease of the worker running it now, so a second delivery does not run it
    twice at once. `status` ends as `succeeded` or `failed`.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due_at", "status", "due_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(128))
    # The recording request's trace context (W3C `traceparent`...): the job's spans join its
    # trace however late and however often the job runs. Null when tracing is off.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None]
