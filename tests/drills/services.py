"""Throwaway PostgreSQL and Redis servers a drill may stop and start at will.

Each lives in its own temporary directory, listens on loopback on a port of this project's share
(18300-18399), runs in its own session (a Ctrl-C in the terminal reaches only the drill, which
then stops them), and is removed on `close()`. The machine's shared services are never touched.
"""

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from contextlib import suppress
from glob import glob
from pathlib import Path

import asyncpg

from tests import servers

PORTS = range(18300, 18400)
START_LIMIT_SECONDS = 60
_taken: set[int] = set()  # handed out by this process, maybe not yet listening


def free_port() -> int:
    """A loopback port of 18300-18399 nobody listens on (and not handed out before)."""
    for port in PORTS:
        if port in _taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port in 18300-18399")


def find_postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (PG_BIN overrides), if any."""
    configured = os.environ.get("PG_BIN")
    candidates = [configured] if configured else sorted(glob("/usr/lib/postgresql/*/bin"))[::-1]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own: `initdb` into a temporary directory, trust auth.

    PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres`
    system user and every server command runs through `runuser`.
    """

    def __init__(self, database: str = "keel") -> None:
        binaries = find_postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; set PG_BIN")
        self.bin = binaries
        self.port = free_port()
        self.database = database
        self.root = Path(tempfile.mkdtemp(prefix="keel-drill-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam(os.environ.get("PG_USER", "postgres"))
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._user = ["runuser", "-u", owner.pw_name, "--"]
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = START_LIMIT_SECONDS) -> None:
        command = [*self._user, str(self.bin / argv[0]), *argv[1:]]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, start_new_session=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr or result.stdout}")

    def init(self) -> None:
        """initdb, start, and create the application's database."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        self.start()
        asyncio.run(self._create_database())

    async def _create_database(self) -> None:
        connection = await asyncpg.connect(self.dsn.rpartition("/")[0] + "/postgres", timeout=10)
        try:
            await connection.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await connection.close()

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c max_connections=60"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(START_LIMIT_SECONDS), "-o", options)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate|smart`, waiting until the server is gone."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, timeout=10)

    def close(self) -> None:
        """Stop the server (immediately: its data is thrown away) and remove the directory."""
        with suppress(Exception):
            if self.running():
                self.stop("immediate")
        pid_file = self.data / "postmaster.pid"
        with suppress(OSError, ValueError):  # pg_ctl failed: kill the postmaster ourselves
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def throwaway_redis() -> servers.ThrowawayRedis:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    return servers.ThrowawayRedis(binary, free_port())
