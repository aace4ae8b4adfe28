"""The pieces of `scripts/bench.py`: wrk runs and their parsing, servers, seeding, reporting."""
