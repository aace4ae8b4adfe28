"""The pieces of `bench/bench.py`: wrk runs and their parsing, servers, seeding, reporting."""
