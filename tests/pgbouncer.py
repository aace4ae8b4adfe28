"""A real PgBouncer (Debian's `pgbouncer` package) in transaction mode, in front of a PostgreSQL
server, on a free loopback port: what CONTRACT.md section 11 promises Keel works behind.

PgBouncer refuses to run as root, so under root it runs as the `postgres` system user.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from tests import servers

PORTS = range(18600, 18700)  # PgBouncer's share of the machine's test ports
START_LIMIT_SECONDS = 20


def pgbouncer_binary() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root user's PATH often lacks.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class ThrowawayPgBouncer:
    """`pool_mode = transaction`, trust auth, any database name passed through to `upstream`.

    `settings` are extra `[pgbouncer]` lines (e.g. `default_pool_size`, `query_timeout`).
    `port`: a port another PgBouncer with `so_reuseport = 1` already listens on, to replace it.
    """

    def __init__(
        self, upstream_url: str, *, port: int | None = None, **settings: str | int
    ) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.binary = binary
        self.upstream = make_url(upstream_url)
        self.port = port or servers.free_port(PORTS)
        self.root = Path(tempfile.mkdtemp(prefix="keel-pgbouncer-"))
        self.log = self.root / "pgbouncer.log"
        self.settings: dict[str, str | int] = {
            "pool_mode": "transaction",
            "default_pool_size": 4,  # fewer than a test app opens: clients share them
            "max_client_conn": 1000,
            "idle_transaction_timeout": 10,  # what idle_in_transaction_session_timeout did
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam(os.environ.get("PG_USER", "postgres"))
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)

    def url(self, database: str | None = None) -> str:
        """The upstream URL with PgBouncer's address instead (same user and database)."""
        url = self.upstream.set(host="127.0.0.1", port=self.port)
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)

    def _write_config(self) -> Path:
        user = self.upstream.username or "postgres"
        (self.root / "userlist.txt").write_text(f'"{user}" ""\n')
        lines = [
            "[databases]",
            f"* = host={self.upstream.host or '127.0.0.1'} port={self.upstream.port or 5432}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {self.root}",
            "auth_type = trust",
            f"auth_file = {self.root / 'userlist.txt'}",
            f"logfile = {self.log}",
            *(f"{key} = {value}" for key, value in self.settings.items()),
        ]
        config = self.root / "pgbouncer.ini"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        config = self._write_config()
        owner = self._owner
        self.process = subprocess.Popen(
            [self.binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
        )
        # Its own Unix socket, not only the TCP port: another PgBouncer may share that.
        deadline = time.monotonic() + START_LIMIT_SECONDS
        socket_file = self.root / f".s.PGSQL.{self.port}"
        while time.monotonic() < deadline and self.process.poll() is None:
            if socket_file.exists() and servers.wait_until_listening(
                self.process, self.port, seconds=deadline - time.monotonic()
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not start on port {self.port}: {self.log_text()}")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """SIGTERM: PgBouncer's immediate shutdown; SIGINT: its safe one (the transactions in
        flight finish first). It is started again by `start()`, on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPgBouncer":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
