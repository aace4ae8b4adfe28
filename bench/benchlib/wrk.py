"""Driving `wrk` (Debian's 4.1, LuaJIT): the Lua scripts it runs and the parsing of its output.

Every run gets a generated Lua script whose `done` hook prints one `BENCH_RESULT {json}` line
with exact counts and latency percentiles in microseconds, so nothing depends on wrk's rounded,
unit-suffixed text. `parse_wrk_output` still understands the text (used if the line is missing).

wrk counts a response as an error when its status is >= 400 ("Non-2xx or 3xx responses"); a 3xx
would slip through, so the harness checks every route's status once before loading it.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULT_MARK = "BENCH_RESULT "

DONE_HOOK = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,'
    .. '"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\\n',
    "BENCH_RESULT ", summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

# Paces each wrk thread to a fixed request rate: every call of delay() (one per request, before
# it is written) claims the thread's next send slot. Missed slots are dropped, not caught up,
# so an overloaded server degrades to a closed loop instead of a burst. CLOCK_MONOTONIC via
# LuaJIT's FFI: wrk's Lua has no millisecond clock of its own.
PACING_HOOK = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clock_id, bench_timespec_t *tp);
]]
local ts = ffi.new("bench_timespec_t")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval_ms = %(interval_ms).6f
local next_at = nil
function delay()
  local now = now_ms()
  if next_at == nil or next_at < now then next_at = now end
  local wait = next_at - now
  next_at = next_at + interval_ms
  return wait
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """What one wrk run sends: method, path, headers, body; how hard; for how long."""

    path: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    threads: int = 2
    connections: int = 64
    duration_s: float = 10.0
    rate: float | None = None  # total requests/s across all threads; None: as fast as possible
    lua: str = ""  # more of wrk's Lua hooks (e.g. overload.py's `response` and `delay`)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    socket_errors: int  # connect + read + write + timeout
    status_errors: int  # responses with status >= 400
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors


def lua_string(value: str) -> str:
    """A Lua string literal for any text (JSON bodies have quotes, tokens have no specials)."""
    return json.dumps(value)  # a JSON string literal is a valid Lua one for printable ASCII


def lua_script(load: Load) -> str:
    lines = [f"wrk.method = {lua_string(load.method)}"]
    if load.body is not None:
        lines.append(f"wrk.body = {lua_string(load.body)}")
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in load.headers.items()]
    script = "\n".join(lines) + "\n" + DONE_HOOK + load.lua
    if load.rate is not None:
        interval_ms = load.threads * 1000.0 / load.rate
        script += PACING_HOOK % {"interval_ms": interval_ms}
    return script


def wrk_command(load: Load, base_url: str, script_path: Path) -> list[str]:
    return [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(load.duration_s))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script_path),
        base_url.rstrip("/") + load.path,
    ]


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(text: str) -> float:
    """wrk's human durations ('812.00us', '1.90ms', '2.01s', '1.00m') in milliseconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h)\s*", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk_output(output: str) -> WrkResult:
    """The figures of one wrk run, from our `done` hook's line or else from wrk's own text."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line[len(RESULT_MARK) :])
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=data["duration_us"] / 1e6,
                socket_errors=int(data["connect"] + data["read"] + data["write"] + data["timeout"]),
                status_errors=int(data["status"]),
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
            )
    return _parse_wrk_text(output)


def _parse_wrk_text(output: str) -> WrkResult:
    total = re.search(r"(\d+) requests in ([0-9.]+\w+)", output)
    if not total:
        raise ValueError(f"no wrk summary in output:\n{output}")
    percentiles = {
        int(m.group(1)): parse_duration_ms(m.group(2))
        for m in re.finditer(r"^\s+(50|90|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    max_latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=parse_duration_ms(total.group(2)) / 1000,
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
        status_errors=int(status.group(1)) if status else 0,
        p50_ms=percentiles.get(50, float("nan")),
        p90_ms=percentiles.get(90, float("nan")),
        p99_ms=percentiles.get(99, float("nan")),
        max_ms=parse_duration_ms(max_latency.group(1)) if max_latency else float("nan"),
    )


def combine(results: Sequence[WrkResult]) -> WrkResult:
    """Several rounds of one route as one row: median rate and percentiles, summed errors."""
    if not results:
        raise ValueError("no results to combine")
    median_rps = statistics.median(r.rps for r in results)
    return WrkResult(
        requests=round(median_rps * 1000),
        duration_s=1000.0,  # so that .rps is the median rate
        socket_errors=sum(r.socket_errors for r in results),
        status_errors=sum(r.status_errors for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p90_ms=statistics.median(r.p90_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
    )


class WrkRun:
    """One wrk process; `start()` then `finish()`, so two can run side by side."""

    def __init__(self, load: Load, base_url: str) -> None:
        self.load = load
        self._dir = tempfile.TemporaryDirectory(prefix="keel-bench-wrk-")
        script = Path(self._dir.name) / "load.lua"
        script.write_text(lua_script(load))
        self.command = wrk_command(load, base_url, script)
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> WrkRun:
        self._proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        return self

    def finish(self) -> WrkResult:
        assert self._proc is not None, "start() first"
        try:
            output, _ = self._proc.communicate(timeout=self.load.duration_s + 60)
        finally:
            self.kill()  # a no-op once wrk has exited; interrupted or hung: never leave it behind
        if self._proc.returncode != 0:
            raise RuntimeError(f"wrk exited with {self._proc.returncode}:\n{output}")
        return parse_wrk_output(output)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()


def run_wrk(load: Load, base_url: str) -> WrkResult:
    return WrkRun(load, base_url).start().finish()
