"""Background jobs: recorded in the request's transaction (the outbox), handed to the queue after
the commit, run by `python -m app worker` (or in the API process without REDIS_URL)."""
