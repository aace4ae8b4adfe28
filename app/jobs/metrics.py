"""The jobs' Prometheus metrics (served by the worker, and by the API when it runs jobs)."""

from prometheus_client import Counter, Gauge

STARTED = Counter("jobs_started_total", "Job attempts started.", ["job"])
SUCCEEDED = Counter("jobs_succeeded_total", "Jobs that ran to completion.", ["job"])
RETRIED = Counter("jobs_retried_total", "Failed attempts that will be tried again.", ["job"])
FAILED = Counter("jobs_failed_total", "Jobs given up after JOB_MAX_ATTEMPTS attempts.", ["job"])
QUEUE_DEPTH = Gauge(
    "jobs_queue_depth",
    "Jobs recorded and not finished (waiting, running or waiting for a retry).",
    multiprocess_mode="max",
)
RETENTION_DELETED = Counter(
    "retention_deleted_total",
    "Rows deleted by the retention sweep (finished jobs, spent tokens, ended sessions, "
    "expired idempotency answers).",
    ["table"],
)
