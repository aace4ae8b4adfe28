"""The overload run (issue 29): far more connections than Keel can serve, a client that honours
`Retry-After`, and a probe client timing its own requests beside it.

wrk (`-c1000` by default) loads the authenticated list; on a 503 its connection waits the
answer's `Retry-After` before its next request, as a well-behaved client would. Meanwhile the
probe client (benchlib/probe.py, a process of its own) sends one list request every 50 ms and
`/health/live` + `/health/ready` every 200 ms, each on schedule, and times every answer by
status: wrk cannot tell an admitted request's latency from a refusal's. `/metrics` is scraped
at the start and the end of the probe's window, so goodput is the server's own count and
refusals are split into admission refusals and anything else (a pool timeout's 503). The
64-connection reference rate is measured on the same server just before.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchlib.report import Target
from benchlib.wrk import Load, WrkResult, WrkRun, run_wrk

# Debts of delay, one per 503 (its Retry-After): wrk calls `response` when an answer arrives and
# `delay` before a connection writes its next request. Both run in the connection's wrk thread,
# but other connections' answers can come in between, so the delays are owed to the thread and
# paid by its next writers: as many waits as refusals, each as long as the server asked.
RETRY_AFTER_HOOK = """
local owed = {}
function response(status, headers, body)
  if status == 503 then
    local after = tonumber(headers["retry-after"] or headers["Retry-After"]) or 1
    owed[#owed + 1] = after * 1000
  end
end
function delay()
  if #owed > 0 then return table.remove(owed, 1) end
  return 0
end
"""
# Issue 29's targets.
ADMITTED_P99_MS, REFUSED_P99_MS, GOODPUT_SHARE = 250.0, 20.0, 0.85
STORM_S = 3.0  # seconds of the overload run left out at its start (see `measure`)


@dataclass
class Timings:
    """The probe client's answers: (status or 0 for a transport error, milliseconds)."""

    answers: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    raised_priority: bool = False  # the probe ran above the server's priority

    def add(self, kind: str, status: int, ms: float) -> None:
        self.answers.setdefault(kind, []).append((status, ms))

    def of(self, kind: str, *statuses: int) -> list[float]:
        return [ms for status, ms in self.answers.get(kind, []) if status in statuses]

    def count(self, kind: str) -> int:
        return len(self.answers.get(kind, []))


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Probe:
    """The probe client (benchlib/probe.py) in a process of its own, beside a wrk run."""

    def __init__(self, base_url: str, token: str, list_path: str, seconds: float) -> None:
        self.command = [
            sys.executable,
            "-m",
            "benchlib.probe",
            base_url,
            token,
            list_path,
            str(seconds),
        ]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Probe:
        here = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(self.command, cwd=here, stdout=subprocess.PIPE, text=True)
        return self

    def finish(self) -> Timings:
        assert self.proc is not None
        out, _ = self.proc.communicate()
        if self.proc.returncode != 0:
            raise SystemExit(f"the probe client failed with exit code {self.proc.returncode}")
        result = json.loads(out)
        timings = Timings(raised_priority=result["raised_priority"])
        for kind, status, ms in result["answers"]:
            timings.add(kind, status, ms)
        return timings


def counters(base_url: str, route: str) -> dict[str, float]:
    """From `/metrics`: `http_requests_refused_total` by reason, every 503 answered (`all_503`)
    and the 2xx answers of `route` (`ok`: not the probes' health checks, not the scrapes)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    counts: dict[str, float] = {"all_503": 0.0, "ok": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_refused_total":
                counts[sample.labels["reason"]] = sample.value
            elif sample.name == "http_requests_total":
                status = sample.labels["status"]
                if status == "503":
                    counts["all_503"] += sample.value
                elif status.startswith("2") and sample.labels["route"] == route:
                    counts["ok"] += sample.value
    return counts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


@dataclass(frozen=True)
class Overload:
    reference: WrkResult  # the list at the run's usual connections
    reference_refused: float  # admission refusals during the reference run
    loaded: WrkResult  # the list at `connections`, Retry-After honoured, storm included
    connections: int
    counts: dict[str, float]  # the server's counters over the probe's window (`counters`)
    window_s: float  # the probe's window: the overload run after its connection storm
    probe: Timings

    @property
    def goodput(self) -> float:
        """The list's 2xx answers per second in the window, counted by the server."""
        return self.counts.get("ok", 0.0) / self.window_s if self.window_s else 0.0

    @property
    def refused(self) -> float:
        return self.counts.get("queue_full", 0.0) + self.counts.get("queue_timeout", 0.0)

    @property
    def other_503(self) -> float:
        """503s that were not admission refusals (a pool timeout, a deadline)."""
        return self.counts.get("all_503", 0.0) - self.refused

    def probe_failures(self) -> tuple[int, int]:
        sent = self.probe.count("live") + self.probe.count("ready")
        ok = len(self.probe.of("live", 200)) + len(self.probe.of("ready", 200))
        return sent - ok, sent

    def targets(self) -> list[Target]:
        admitted = percentile(self.probe.of("list", 200), 0.99)
        refused = percentile(self.probe.of("list", 503), 0.99)
        failed, sent = self.probe_failures()
        share = self.goodput / self.reference.rps if self.reference.rps else 0.0
        return [
            Target(
                f"overload: admitted list p99 at {self.connections} connections (probe client)",
                f"<= {ADMITTED_P99_MS:g} ms",
                f"{admitted:.1f} ms",
                admitted <= ADMITTED_P99_MS,
            ),
            Target(
                "overload: refusal p99 (probe client), none a pool timeout",
                f"<= {REFUSED_P99_MS:g} ms, 0 other 503s",
                f"{refused:.1f} ms over {len(self.probe.of('list', 503))} refusals; "
                f"{self.other_503:.0f} other 503s",
                (math.isnan(refused) or refused <= REFUSED_P99_MS) and self.other_503 == 0,
            ),
            Target(
                "overload: /health/live + /health/ready probes",
                "100 % 200",
                f"{failed} of {sent} failed",
                failed == 0 and sent > 0,
            ),
            Target(
                "overload: goodput vs the 64-connection rate",
                f">= {GOODPUT_SHARE:.0%}",
                f"{self.goodput:,.0f} vs {self.reference.rps:,.0f} req/s = {share:.1%}",
                share >= GOODPUT_SHARE,
            ),
            Target(
                "overload: nothing refused at the reference's connections",
                "0 refused",
                f"{self.reference_refused:.0f} refused, {self.reference.status_errors} errors",
                self.reference_refused == 0 and self.reference.status_errors == 0,
            ),
        ]

    def lines(self) -> list[str]:
        """What the report says beside the targets."""
        list_ok = self.probe.of("list", 200)
        list_refused = self.probe.of("list", 503)
        live = self.probe.of("live", 200)
        probes = live + self.probe.of("ready", 200)
        priority = "above" if self.probe.raised_priority else "at"
        return [
            f"Overload: wrk `-c{self.connections} -d{self.loaded.duration_s:.0f}s` on the list "
            "(a 503 makes the connection wait its `Retry-After` before its next request); the "
            f"figures cover {self.window_s:.0f} s of it, from {STORM_S:g} s after its start "
            "(when its connections, all opened at once, have sent their first requests). The "
            "probe client (a process of its own, "
            f"{priority} the server's priority) sends one list request every 50 ms and "
            "`/health/live` + `/health/ready` every 200 ms. Goodput and refusals are the server's "
            "counts over that window. Reference: the list at "
            f"{self.reference.rps:,.0f} req/s just before, on the same server.",
            f"Overload figures: goodput {self.goodput:,.0f} req/s; refused "
            f"{self.refused / self.window_s:,.0f} req/s ("
            f"{self.counts.get('queue_full', 0):,.0f} at once, "
            f"{self.counts.get('queue_timeout', 0):,.0f} after the queue deadline), "
            f"{self.other_503:.0f} other 503s. Probe client's list: {len(list_ok)} admitted "
            f"(p50 {percentile(list_ok, 0.5):.1f} ms, p99 {percentile(list_ok, 0.99):.1f} ms), "
            f"{len(list_refused)} refused (p50 {percentile(list_refused, 0.5):.1f} ms, "
            f"p99 {percentile(list_refused, 0.99):.1f} ms); probes p99 "
            f"{percentile(probes, 0.99):.1f} ms, `/health/live` alone (never queued, no work: "
            "the floor under any answer's latency on this machine under this load) p50 "
            f"{percentile(live, 0.5):.1f} ms, p99 "
            f"{percentile(live, 0.99):.1f} ms. wrk over the whole run, "
            "storm included: "
            f"{self.loaded.requests:,} answers, p50 {self.loaded.p50_ms:.1f} ms, "
            f"p99 {self.loaded.p99_ms:.1f} ms, socket errors {self.loaded.socket_errors}.",
        ]


def measure(
    base_url: str, list_load: Load, token: str, connections: int, seconds: float
) -> Overload:
    """The reference at `list_load`'s connections, then the overload run with the probe.

    wrk opens its connections all at once and their first requests land together: that storm
    (STORM_S) is left out of the figures, which cover the `seconds` of steady overload after it.
    """
    route = urlsplit(list_load.path).path  # the route template: the list's path has no parameter
    before = counters(base_url, route)
    reference = run_wrk(list_load, base_url)
    middle = counters(base_url, route)
    loaded_load = replace(
        list_load,
        connections=connections,
        duration_s=STORM_S + seconds + 1,  # + 1: the load outlasts the probe's last requests
        rate=None,
        lua=RETRY_AFTER_HOOK,
    )
    loaded_run = WrkRun(loaded_load, base_url).start()
    time.sleep(STORM_S)
    steady = counters(base_url, route)
    started = time.perf_counter()
    timings = Probe(base_url, token, list_load.path, seconds).start().finish()
    window = counters(base_url, route)
    window_s = time.perf_counter() - started
    loaded = loaded_run.finish()
    reference_refused = sum(
        delta(middle, before).get(r, 0.0) for r in ("queue_full", "queue_timeout")
    )
    return Overload(
        reference, reference_refused, loaded, connections, delta(window, steady), window_s, timings
    )
