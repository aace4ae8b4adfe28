"""Results: the table, the issue's targets with PASS/FAIL, docs/benchmarks.md and its chart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchlib.wrk import WrkResult


@dataclass(frozen=True)
class RouteRow:
    label: str
    keel: WrkResult
    ceiling: WrkResult | None = None

    @property
    def ratio(self) -> float | None:
        if self.ceiling is None or self.ceiling.rps == 0:
            return None
        return self.keel.rps / self.ceiling.rps


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    figure: str
    ok: bool | None  # None: could not be measured in this run (e.g. no ceiling)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.ok]

    def line(self) -> str:
        return f"{self.verdict:<4}  {self.name}: {self.figure} (target {self.goal})"


@dataclass
class Report:
    date: str
    settings: str
    machine: dict[str, str]
    rows: list[RouteRow] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


TABLE_HEADER = ("route", "server", "req/s", "p50 ms", "p99 ms", "errors", "Keel/ceiling")


def table_rows(rows: Sequence[RouteRow]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        for server, result in (("Keel", row.keel), ("ceiling", row.ceiling)):
            if result is None:
                continue
            ratio = fmt_ratio(row.ratio) if server == "Keel" and row.ceiling else ""
            if server == "Keel" and row.ceiling is None and row.label in RATIO_ROUTES:
                ratio = "n/a"
            out.append(
                (
                    row.label,
                    server,
                    fmt_rps(result.rps),
                    fmt_ms(result.p50_ms),
                    fmt_ms(result.p99_ms),
                    str(result.errors),
                    ratio,
                )
            )
    return out


RATIO_ROUTES = ("GET /api/v1/items?limit=20", "GET /health/live")


def format_table(rows: Sequence[RouteRow]) -> str:
    """A fixed-width text table for the terminal."""
    body = [TABLE_HEADER, *table_rows(rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(TABLE_HEADER))]
    lines = []
    for n, line in enumerate(body):
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- targets -------------------------------------------------------------------------------


def ratio_target(name: str, row: RouteRow | None, minimum: float) -> Target:
    goal = f">= {minimum:.0%} of the ceiling"
    if row is None or row.ratio is None:
        return Target(name, goal, "n/a (no ceiling in this run)", None)
    assert row.ceiling is not None
    figure = f"{row.ratio:.1%} ({fmt_rps(row.keel.rps)} / {fmt_rps(row.ceiling.rps)} req/s)"
    return Target(name, goal, figure, row.ratio >= minimum)


def paced_p99_target(result: WrkResult, requested_rate: float, max_ms: float) -> Target:
    figure = (
        f"p99 {fmt_ms(result.p99_ms)} ms at {fmt_rps(result.rps)} req/s "
        f"(asked {fmt_rps(requested_rate)} req/s = half the measured max; "
        f"{result.errors} errors)"
    )
    ok = result.p99_ms <= max_ms and result.errors == 0
    return Target("list p99 at half of max throughput", f"<= {max_ms:.0f} ms", figure, ok)


def storm_target(live: WrkResult, login: WrkResult, max_ms: float) -> Target:
    figure = (
        f"/health/live p99 {fmt_ms(live.p99_ms)} ms at {fmt_rps(live.rps)} req/s while "
        f"4 clients log in ({fmt_rps(login.rps)} logins/s, login p99 {fmt_ms(login.p99_ms)} ms; "
        f"errors live {live.errors}, login {login.errors})"
    )
    ok = live.p99_ms <= max_ms and live.errors == 0
    return Target("/health/live p99 during a login storm", f"<= {max_ms:.0f} ms", figure, ok)


def memory_targets(
    rounds: Sequence[dict[int, float]], max_mb: float, max_growth: float
) -> list[Target]:
    """`rounds`: per load round, {worker pid: RSS MiB} taken right after it."""
    peak = max((mb for r in rounds for mb in r.values()), default=float("nan"))
    per_round = "; ".join(
        f"round {n}: " + ", ".join(f"{mb:.1f}" for _, mb in sorted(r.items()))
        for n, r in enumerate(rounds, 1)
    )
    rss = Target(
        "RSS per worker", f"<= {max_mb:.0f} MB", f"max {peak:.1f} MB ({per_round})", peak <= max_mb
    )
    if len(rounds) < 3 or set(rounds[1]) != set(rounds[2]) or not rounds[1]:
        figure = "n/a: workers changed between rounds 2 and 3"
        return [rss, Target("RSS growth, round 2 -> 3", f"<= {max_growth:.0%}", figure, None)]
    growth = max(rounds[2][pid] / rounds[1][pid] - 1 for pid in rounds[1])
    figure = f"{growth:+.1%} (worst worker)"
    return [
        rss,
        Target("RSS growth, round 2 -> 3", f"<= {max_growth:.0%}", figure, growth <= max_growth),
    ]


def cold_start_target(seconds: float, max_s: float) -> Target:
    return Target(
        "cold start to /health/ready = 200",
        f"<= {max_s:.0f} s",
        f"{seconds:.2f} s",
        seconds <= max_s,
    )


# --- docs/benchmarks.md and the chart -------------------------------------------------------


def render_markdown(report: Report, chart_name: str) -> str:
    machine = markdown_table(("fact", "value"), list(report.machine.items()))
    results = markdown_table(TABLE_HEADER, table_rows(report.rows))
    targets = markdown_table(
        ("target", "goal", "measured", "verdict"),
        [(t.name, t.goal, t.figure, f"**{t.verdict}**") for t in report.targets],
    )
    details = "\n".join(f"- {line}" for line in report.details)
    return f"""# Benchmarks

Written by `make bench` (`bench/bench.py`) on {report.date}. Rerun it on a quiet machine to
refresh this page; figures drift by up to 20% between runs on a shared machine, so compare the
Keel/ceiling ratios (measured in the same run, rounds interleaved) rather than absolute rates.

Settings: {report.settings}

![req/s and p99, Keel vs the ceiling]({chart_name})

## Results

{results}

Rates are the median over rounds; p50/p99 are the medians of each round's percentiles; errors
are summed (socket errors + responses with status >= 400). The ceiling
(`../shared/bench/ceiling`) is a framework-free ASGI app doing the same work as Keel's
authenticated list: the ratio is how close the whole stack comes to this machine's limit.

## Targets (issue 9)

{targets}

## How each figure is taken

{details}

## Machine

{machine}
"""


def draw_chart(rows: Sequence[RouteRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row.label.replace(" /api/v1", "\n/api/v1") for row in rows]
    x = list(range(len(rows)))
    width = 0.38
    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(13, 5))
    for ax, metric, title in (
        (rate_ax, "rps", "throughput (req/s, log scale)"),
        (p99_ax, "p99_ms", "p99 latency under full load (ms, log scale)"),
    ):
        keel = [getattr(row.keel, metric) for row in rows]
        with_ceiling = [(i, row.ceiling) for i, row in enumerate(rows) if row.ceiling]
        ax.bar([i - width / 2 for i in x], keel, width, label="Keel", color="#2b6cb0")
        ax.bar(
            [i + width / 2 for i, _ in with_ceiling],
            [getattr(result, metric) for _, result in with_ceiling],
            width,
            label="ceiling",
            color="#a0aec0",
        )
        for i, value in enumerate(keel):
            ax.annotate(
                f"{value:,.0f}" if metric == "rps" else f"{value:.1f}",
                (i - width / 2, value),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xticks(x, labels, fontsize=7)
        ax.legend()
    fig.suptitle("Keel vs the framework-free ceiling (same machine, same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
