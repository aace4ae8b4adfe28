"""The overload run (issue 29): far more connections than Keel can serve, a client that honours
`Retry-After`, and a probe client timing its own requests beside it.

wrk (`-c1000` by default) loads the authenticated list; on a 503 its connection waits the
answer's `Retry-After` before its next request, as a well-behaved client would. Meanwhile the
probe client sends one list request every 50 ms and `/health/live` + `/health/ready` every
200 ms, each on schedule (never waiting for the previous answer), and times every answer by
status: wrk cannot tell an admitted request's latency from a refusal's. `/metrics` is scraped
before and after, so refusals are split into admission refusals and anything else (a pool
timeout's 503). The 64-connection reference rate is measured on the same server just before.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, field, replace

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchlib.report import Target
from benchlib.wrk import Load, WrkResult, run_wrk

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
LIST_EVERY_S, PROBES_EVERY_S = 0.05, 0.2
PROBE_TIMEOUT_S = 10.0
# Issue 29's targets.
ADMITTED_P99_MS, REFUSED_P99_MS, GOODPUT_SHARE = 250.0, 20.0, 0.85


@dataclass
class Timings:
    """The probe client's answers: (status or 0 for a transport error, milliseconds)."""

    answers: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

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


async def _probe(base_url: str, token: str, list_path: str, seconds: float) -> Timings:
    timings = Timings()
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)

    async def one(client: httpx.AsyncClient, kind: str, path: str, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            status = (await client.get(path, headers=headers)).status_code
        except httpx.HTTPError:
            status = 0
        timings.add(kind, status, (time.perf_counter() - started) * 1000)

    async with httpx.AsyncClient(
        base_url=base_url, timeout=PROBE_TIMEOUT_S, limits=limits
    ) as client:
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        tick = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            tasks.append(asyncio.create_task(one(client, "list", list_path, auth)))
            if tick % round(PROBES_EVERY_S / LIST_EVERY_S) == 0:
                tasks.append(asyncio.create_task(one(client, "live", "/health/live", {})))
                tasks.append(asyncio.create_task(one(client, "ready", "/health/ready", {})))
            tick += 1
            await asyncio.sleep(max(0.0, tick * LIST_EVERY_S - elapsed))
        await asyncio.gather(*tasks)
    return timings


class Probe:
    """The probe client in a thread of its own, beside a wrk run."""

    def __init__(self, base_url: str, token: str, list_path: str, seconds: float) -> None:
        self.result: Timings | None = None
        self._thread = threading.Thread(
            target=self._run, args=(base_url, token, list_path, seconds), daemon=True
        )

    def _run(self, base_url: str, token: str, list_path: str, seconds: float) -> None:
        self.result = asyncio.run(_probe(base_url, token, list_path, seconds))

    def start(self) -> Probe:
        self._thread.start()
        return self

    def finish(self) -> Timings:
        self._thread.join()
        assert self.result is not None, "the probe client failed (see above)"
        return self.result


def refusals(base_url: str) -> dict[str, float]:
    """`http_requests_refused_total` by reason, and every 503 answered (`all_503`)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    counts: dict[str, float] = {"all_503": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_refused_total":
                counts[sample.labels["reason"]] = sample.value
            elif sample.name == "http_requests_total" and sample.labels["status"] == "503":
                counts["all_503"] += sample.value
    return counts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


@dataclass(frozen=True)
class Overload:
    reference: WrkResult  # the list at the run's usual connections
    reference_refused: float  # admission refusals during the reference run
    loaded: WrkResult  # the list at `connections`, Retry-After honoured
    connections: int
    counts: dict[str, float]  # refusals by reason, and all 503s, during the overload run
    probe: Timings

    @property
    def goodput(self) -> float:
        """2xx (non-error answers) per second under overload."""
        good = self.loaded.requests - self.loaded.status_errors
        return good / self.loaded.duration_s if self.loaded.duration_s else 0.0

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
        return [
            f"Overload: wrk `-c{self.connections} -d{self.loaded.duration_s:.0f}s` on the list "
            "(a 503 makes the connection wait its `Retry-After` before its next request), the "
            "probe client beside it (one list request every 50 ms; `/health/live` and "
            "`/health/ready` every 200 ms). Reference: the list at "
            f"{self.reference.rps:,.0f} req/s just before, on the same server.",
            f"Overload figures: wrk answers {self.loaded.requests:,} (p50 "
            f"{self.loaded.p50_ms:.1f} ms, p99 {self.loaded.p99_ms:.1f} ms, socket errors "
            f"{self.loaded.socket_errors}); goodput {self.goodput:,.0f} req/s; refused "
            f"{self.refused:,.0f} ({self.counts.get('queue_full', 0):,.0f} queue full, "
            f"{self.counts.get('queue_timeout', 0):,.0f} after the queue deadline), "
            f"{self.other_503:.0f} other 503s. Probe client's list: {len(list_ok)} admitted "
            f"(p50 {percentile(list_ok, 0.5):.1f} ms, p99 {percentile(list_ok, 0.99):.1f} ms), "
            f"{len(self.probe.of('list', 503))} refused (p50 "
            f"{percentile(self.probe.of('list', 503), 0.5):.1f} ms, p99 "
            f"{percentile(self.probe.of('list', 503), 0.99):.1f} ms); probes p99 "
            f"{percentile(self.probe.of('live', 200) + self.probe.of('ready', 200), 0.99):.1f} ms.",
        ]


def measure(
    base_url: str, list_load: Load, token: str, connections: int, seconds: float
) -> Overload:
    """The reference at `list_load`'s connections, then the overload run with the probe."""
    before = refusals(base_url)
    reference = run_wrk(list_load, base_url)
    middle = refusals(base_url)
    loaded_load = replace(
        list_load, connections=connections, duration_s=seconds, rate=None, lua=RETRY_AFTER_HOOK
    )
    probe = Probe(base_url, token, list_load.path, seconds).start()
    loaded = run_wrk(loaded_load, base_url)
    timings = probe.finish()
    after = refusals(base_url)
    reference_refused = sum(
        delta(middle, before).get(r, 0.0) for r in ("queue_full", "queue_timeout")
    )
    return Overload(
        reference, reference_refused, loaded, connections, delta(after, middle), timings
    )
