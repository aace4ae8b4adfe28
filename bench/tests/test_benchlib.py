"""The benchmark harness's pure helpers (bench/benchlib): wrk output parsing, Lua, targets.

The harness itself (`make bench`) is never run here, and nothing here times anything.
"""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib.report import (
    Report,
    RouteRow,
    format_table,
    memory_targets,
    ratio_target,
    render_markdown,
)
from benchlib.wrk import (
    Load,
    WrkResult,
    combine,
    lua_script,
    parse_duration_ms,
    parse_wrk_output,
)

# Captured from Debian's wrk 4.1.0 with the harness's own Lua script (404s from a toy server).
WRK_SAMPLE = """\
Running 1s test @ http://127.0.0.1:18470/missing
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.18ms    1.36ms  11.35ms   86.16%
    Req/Sec     2.31k   634.87     3.67k    72.73%
  Latency Distribution
     50%  546.00us
     75%    1.39ms
     90%    3.10ms
     99%    6.73ms
  2529 requests in 1.10s, 1.25MB read
  Socket errors: connect 0, read 110, write 2, timeout 3
  Non-2xx or 3xx responses: 2529
Requests/sec:   2299.54
Transfer/sec:      1.14MB
BENCH_RESULT {"requests":2529,"duration_us":1099784,"connect":0,"read":110,"write":2,\
"status":2529,"timeout":3,"p50_us":546,"p90_us":3097,"p99_us":6729,"max_us":11352}
"""


def result(rps: float, p99: float = 5.0, errors: int = 0) -> WrkResult:
    return WrkResult(
        requests=round(rps * 10),
        duration_s=10.0,
        socket_errors=errors,
        status_errors=0,
        p50_ms=1.0,
        p90_ms=2.0,
        p99_ms=p99,
        max_ms=p99 * 2,
    )


def test_parses_the_done_hook_line() -> None:
    parsed = parse_wrk_output(WRK_SAMPLE)
    assert parsed.requests == 2529
    assert parsed.duration_s == pytest.approx(1.099784)
    assert parsed.rps == pytest.approx(2299.5, abs=0.1)
    assert (parsed.socket_errors, parsed.status_errors, parsed.errors) == (115, 2529, 2644)
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms) == (0.546, 3.097, 6.729)
    assert parsed.max_ms == 11.352


def test_falls_back_to_wrks_own_text() -> None:
    text_only = WRK_SAMPLE.split("BENCH_RESULT", maxsplit=1)[0]
    parsed = parse_wrk_output(text_only)
    assert parsed.requests == 2529
    assert parsed.duration_s == pytest.approx(1.10)
    assert (parsed.socket_errors, parsed.status_errors) == (115, 2529)
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms) == (0.546, 3.10, 6.73)
    assert parsed.max_ms == pytest.approx(11.35)


def test_text_without_errors_or_distribution() -> None:
    text = "  10 requests in 2.00s, 1.00KB read\nRequests/sec:      5.00\n"
    parsed = parse_wrk_output(text)
    assert (parsed.requests, parsed.errors) == (10, 0)
    assert math.isnan(parsed.p99_ms)


def test_output_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no wrk summary"):
        parse_wrk_output("unable to connect to 127.0.0.1:18400 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.00us", 0.812), ("1.90ms", 1.9), ("2.01s", 2010.0), ("1.00m", 60_000.0)],
)
def test_wrk_durations(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == pytest.approx(ms)


def test_lua_script_sets_the_request_and_paces_only_when_asked() -> None:
    load = Load(
        "/api/v1/items",
        "POST",
        {"Content-Type": "application/json"},
        '{"title": "a \\"quoted\\" title"}',
        threads=2,
    )
    script = lua_script(load)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert r'wrk.body = "{\"title\": \"a \\\"quoted\\\" title\"}"' in script
    assert "function done(" in script
    assert "function delay(" not in script
    paced = lua_script(Load("/health/live", threads=2, rate=500.0))
    assert "function delay(" in paced
    assert "local interval_ms = 4.000000" in paced  # 2 threads at 250 req/s each


def test_combine_takes_medians_and_sums_errors() -> None:
    combined = combine([result(100, 5, 1), result(300, 9, 2), result(200, 7, 0)])
    assert combined.rps == pytest.approx(200)
    assert combined.p99_ms == 7
    assert combined.errors == 3


def test_ratio_targets_and_table() -> None:
    row = RouteRow("GET /api/v1/items?limit=20", result(1200), result(3000))
    target = ratio_target("list", row, 0.40)
    assert (target.verdict, row.ratio) == ("PASS", pytest.approx(0.4))
    assert ratio_target("list", RouteRow(row.label, result(1000), result(3000)), 0.4).ok is False
    assert ratio_target("list", None, 0.4).verdict == "n/a"
    table = format_table([row, RouteRow("POST /api/v1/items", result(500))])
    assert "40.0%" in table
    assert "POST /api/v1/items" in table


def test_memory_targets() -> None:
    rss, growth = memory_targets(
        [{1: 80.0, 2: 82.0}, {1: 90.0, 2: 90.0}, {1: 93.0, 2: 91.0}], 150, 0.05
    )
    assert (rss.ok, growth.ok) == (True, True)
    assert "+3.3%" in growth.figure
    _, leaking = memory_targets([{1: 80.0}, {1: 100.0}, {1: 120.0}], 150, 0.05)
    assert leaking.ok is False
    _, replaced = memory_targets([{1: 80.0}, {1: 90.0}, {3: 90.0}], 150, 0.05)
    assert replaced.ok is None


def test_markdown_lists_every_target() -> None:
    row = RouteRow("GET /health/live", result(9000), result(30000))
    report = Report(
        date="2026-01-01 00:00 UTC",
        settings="wrk -t2 -c64",
        machine={"CPU": "2"},
        rows=[row],
        targets=[ratio_target("live", row, 0.30)],
        details=["how"],
    )
    text = render_markdown(report, "benchmarks.png")
    assert "![" in text
    assert "benchmarks.png" in text
    assert "| live | >= 30% of the ceiling | 30.0% (9,000 / 30,000 req/s) | **PASS** |" in text


def test_overload_targets_from_the_probe_clients_answers() -> None:
    from benchlib.overload import RETRY_AFTER_HOOK, Overload, Timings, percentile

    assert "function response" in lua_script(Load("/", lua=RETRY_AFTER_HOOK))
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert math.isnan(percentile([], 0.99))
    probe = Timings()
    for ms in (10.0, 20.0, 30.0):
        probe.add("list", 200, ms)
    probe.add("list", 503, 2.0)
    probe.add("live", 200, 1.0)
    probe.add("ready", 0, 10_000.0)  # a transport error: a failed probe
    reference = WrkResult(1000, 1.0, 0, 0, 1, 2, 3, 4)
    loaded = WrkResult(2000, 2.0, 0, 200, 1, 2, 3, 4)
    # The server's counts over a 2-second window: 1,800 answers were 2xx.
    counts = {"queue_full": 80.0, "queue_timeout": 15.0, "all_503": 100.0, "ok": 1800.0}
    result = Overload(reference, 0.0, loaded, 1000, counts, 2.0, probe)
    verdicts = [target.ok for target in result.targets()]
    # admitted p99 30 ms; refusals fast but 5 other 503s; 1 of 2 probes failed; 90 %; 0 refused
    assert verdicts == [True, False, False, True, True]
    assert result.goodput == 900
    assert result.other_503 == 5
