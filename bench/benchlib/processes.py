"""Processes the harness starts: each in its own process group, all stopped on the way out."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

PORTS = range(18400, 18500)  # the range this harness may bind


def free_port(taken: Iterable[int] = ()) -> int:
    """The first port of PORTS that nothing listens on (and that we have not handed out)."""
    skip = set(taken)
    for port in PORTS:
        if port in skip:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ProcessGroups:
    """Spawns commands in new sessions; `stop_all()` TERMs then KILLs every group it started."""

    def __init__(self) -> None:
        self._servers: list[Server] = []

    def spawn(
        self,
        name: str,
        command: Sequence[str | Path],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        base_url: str,
    ) -> Server:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(part) for part in command],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers die with it
            )
        server = Server(name, proc, base_url, log_path)
        self._servers.append(server)
        return server

    def stop(self, server: Server, timeout: float = 20.0) -> None:
        proc = server.proc
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group (workers), if any
        if proc.poll() is None:
            proc.wait()
        if server in self._servers:
            self._servers.remove(server)

    def stop_all(self) -> None:
        for server in reversed(list(self._servers)):
            self.stop(server)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_http_ok(server: Server, path: str, timeout: float = 60.0) -> float:
    """Poll `path` until it answers 200; returns the seconds waited. Fails if the server dies."""
    started = time.perf_counter()
    deadline = started + timeout
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise SystemExit(
                    f"{server.name} exited with {server.proc.returncode} before it was ready; "
                    f"its log ({server.log_path}) ends:\n{server.log_tail()}"
                )
            try:
                if client.get(path).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise SystemExit(f"{server.name} not ready within {timeout:.0f} s:\n{server.log_tail()}")


def child_pids(parent: int) -> list[int]:
    """Direct children of `parent` (Gunicorn's workers), read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time used so far by these processes (those still alive)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def wait_idle(
    master: int, *, max_share: float = 0.10, window: float = 0.5, timeout: float = 30.0
) -> float:
    """Wait until a server (master + workers) uses under `max_share` of one core over `window`
    seconds, e.g. while it works off requests queued by the previous run (logins: Argon2).
    Returns the seconds waited; gives up quietly after `timeout`."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        pids = [master, *child_pids(master)]
        before = cpu_seconds(pids)
        time.sleep(window)
        if (cpu_seconds(pids) - before) / window < max_share:
            break
    return time.perf_counter() - started
