"""The jobs' Prometheus metrics (served by the worker, and by the API when it runs jobs)."""

from prometheus_client import Counter, Gauge, Histogram

STARTED = Counter("jobs_started_total", "Job attempts started.", ["job"])
SUCCEEDED = Counter("jobs_succeeded_total", "Jobs that ran to completion.", ["job"])
RETRIED = Counter("jobs_retried_total", "Failed attempts that will be tried again.", ["job"])
FAILED = Counter("jobs_failed_total", "Jobs given up after JOB_MAX_ATTEMPTS attempts.", ["job"])
QUEUE_DEPTH = Gauge(
    "jobs_queue_depth",
    "Jobs recorded and not finished (waiting, running or waiting for a retry).",
    multiprocess_mode="max",
)
DURATION = Histogram(
    "jobs_duration_seconds",
    "Time one attempt of a job took, by job and outcome (succeeded, retried, failed).",
    ["job", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
OLDEST_WAITING = Gauge(
    "jobs_oldest_waiting_seconds",
    "Age of the oldest job recorded and never started (0 when none waits); set by each sweep.",
    multiprocess_mode="max",
)
RETENTION_DELETED = Counter(
    "retention_deleted_total",
    "Rows deleted by the retention sweep (finished jobs, spent tokens, ended sessions, "
    "expired idempotency answers).",
    ["table"],
)
