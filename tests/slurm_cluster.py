"""A one-node Slurm cluster on this machine, for testing the workflow's Slurm path for real.

Debian's Slurm (slurmctld, slurmd, slurmdbd, slurm-client), munge and MariaDB must be installed
(`make test` installs them as root). Without systemd the daemons start by hand: MariaDB for the
accounting database (the Slurm executor asks `sacct` for each job's state), munged for
authentication, then slurmdbd, slurmctld and slurmd, all configured in a private directory through
``SLURM_CONF``. A job's steps (``srun`` inside ``sbatch``) read the configuration from its standard
place, so /etc/slurm/slurm.conf links to it while the cluster runs (only where that file does not
exist: a machine with its own Slurm is refused). One machine holds one such cluster at a time: a second
test run on the same machine (two checkouts tested at once) waits for the first's cluster to stop,
through a lock on /etc/slurm that the kernel releases when its holder dies. Whoever holds that lock
knows that a link of this module's own is left by a run that was killed: the link goes, with the dead
run's Slurm daemons, as do daemon sockets nothing answers on. Every daemon started here is stopped and
the link removed on exit, also when the block fails; a daemon that was already running (MariaDB,
munged) is left running.

Run by hand: ``python tests/slurm_cluster.py`` starts a cluster, runs one job through ``sbatch`` and
stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEBIAN_PACKAGES = ("slurmctld", "slurmd", "slurmdbd", "slurm-client", "munge", "mariadb-server")
ACCOUNT = "taskvec"
PARTITION = "main"
DB_SOCKET = Path("/run/mysqld/mysqld.sock")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
WAIT_FOR_OTHER_CLUSTER_S = 3600.0  # another checkout's Slurm test takes about 15 minutes
SLURM_DAEMONS = ("slurmctld", "slurmd", "slurmdbd")


class SlurmUnavailable(RuntimeError):
    pass


def missing_programs() -> list[str]:
    programs = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "sacctmgr", "munged", "mysqld_safe", "mariadb")
    return [p for p in programs if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, what: str, timeout: float = 60.0, logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tails = "".join(f"\n--- {log}:\n{log.read_text()[-2000:]}" for log in logs if log.exists())
    raise SlurmUnavailable(f"timed out after {timeout:.0f} s waiting for {what}{tails}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def write_config(root: Path, host: str, ports: dict[str, int]) -> Path:
    """slurm.conf and slurmdbd.conf for one node (this machine's CPUs, 90% of its memory)."""
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=taskvec
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort={ports["ctld"]}
SlurmdPort={ports["d"]}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports["dbd"]}
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={int(_memory_mb() * 0.9)} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    dbd = root / "slurmdbd.conf"
    dbd.write_text(
        f"""AuthType=auth/munge
DbdHost={host}
DbdAddr=127.0.0.1
DbdPort={ports["dbd"]}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db_{ports["dbd"]}
PidFile={root / "slurmdbd.pid"}
LogFile={root / "slurmdbd.log"}
"""
    )
    dbd.chmod(0o600)
    return conf


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def _clear_if_dead(sock: Path, *leftovers: Path) -> None:
    """A daemon's socket that nothing answers (a run killed with its daemons, or a machine restarted
    with /run kept) would be taken for a running daemon: it goes, with the dead daemon's pid and lock
    files, so that the daemon is started afresh."""
    if sock.exists() and not _socket_alive(sock):
        print(f"removing {sock}: no daemon answers on it", file=sys.stderr)
        for path in (sock, *leftovers):
            path.unlink(missing_ok=True)


def _left_by_a_test(link: Path) -> bool:
    """Whether ``link`` points at a slurm.conf this module wrote (in a directory of its own, named
    ``slurm`` by the tests or ``taskvec-slurm-*`` by hand)."""
    target = Path(os.readlink(link))
    return target.name == "slurm.conf" and (
        target.parent.name == "slurm" or target.parent.name.startswith("taskvec-slurm-")
    )


@contextlib.contextmanager
def machine_lock(directory: Path, timeout: float = WAIT_FOR_OTHER_CLUSTER_S) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (flock: released by the kernel when the holder dies),
    waiting up to ``timeout`` seconds for another holder; refuse with what holds it after that."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SlurmUnavailable(
                        f"another test run's Slurm cluster held {directory} for over {timeout:.0f} s; "
                        "wait for it to end, or stop it"
                    ) from None
                if not told:
                    print(f"waiting for another test run's Slurm cluster (it holds {directory})", file=sys.stderr)
                    told = True
                time.sleep(1.0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stop_left_daemons(cluster: Path) -> None:
    """Stop the Slurm daemons whose pid files a killed run left in its cluster directory (only a
    process of that daemon's name: a pid may have been reused since)."""
    for daemon in SLURM_DAEMONS:
        with contextlib.suppress(OSError, ValueError):
            pid = int((cluster / f"{daemon}.pid").read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip() == daemon:
                print(f"stopping {daemon} (pid {pid}), left by an interrupted test run", file=sys.stderr)
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def local_slurm(root: Path | None = None) -> Iterator[dict[str, str]]:
    """Start a one-node cluster; yield the environment (``SLURM_CONF``) for its commands."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting Slurm's daemons needs root")
    missing = missing_programs()
    if missing:
        raise SlurmUnavailable(
            f"missing {', '.join(missing)}: install Debian's {' '.join(DEBIAN_PACKAGES)} (`make test` does, as root)"
        )
    with machine_lock(SYSTEM_CONF.parent):
        if SYSTEM_CONF.is_symlink() and _left_by_a_test(SYSTEM_CONF):
            # the lock is ours, so the run that made this link is dead: it was killed before its clean-up
            print(f"removing {SYSTEM_CONF}: a link left by an interrupted test run", file=sys.stderr)
            _stop_left_daemons(Path(os.readlink(SYSTEM_CONF)).parent)
            SYSTEM_CONF.unlink()
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise SlurmUnavailable(f"{SYSTEM_CONF} exists: this machine has a Slurm of its own; test on one without")
        with _cluster(root) as env:
            yield env


@contextlib.contextmanager
def _cluster(root: Path | None) -> Iterator[dict[str, str]]:
    """The cluster's daemons, /etc/slurm/slurm.conf linking to its configuration (the caller holds
    the machine's lock and has checked that the link is free)."""
    root = Path(root or tempfile.mkdtemp(prefix="taskvec-slurm-"))
    host = socket.gethostname().split(".")[0]
    ports = {"ctld": _free_port(), "d": _free_port(), "dbd": _free_port()}
    conf = write_config(root, host, ports)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[tuple[str, subprocess.Popen | Path]] = []
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.symlink_to(conf)
    try:
        _clear_if_dead(DB_SOCKET, DB_SOCKET.parent / "mysqld.pid")
        _clear_if_dead(MUNGE_SOCKET, MUNGE_SOCKET.parent / "munged.pid", MUNGE_SOCKET.with_name("munge.socket.2.lock"))
        if not DB_SOCKET.exists():
            DB_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(DB_SOCKET.parent, "mysql", "mysql")
            log = open(root / "mysqld.log", "w")  # noqa: SIM115 (closed with the process)
            started.append(("mariadb", subprocess.Popen(["mysqld_safe", "--user=mysql"], stdout=log, stderr=log)))
            _wait(DB_SOCKET.exists, "MariaDB's socket", logs=(root / "mysqld.log",))
            _wait(lambda: _run("mariadb", "-e", "select 1", check=False).returncode == 0, "MariaDB")
        if not MUNGE_SOCKET.exists():
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
            _run("runuser", "-u", "munge", "--", "/usr/sbin/munged")
            started.append(("munged", Path("/run/munge/munged.pid")))
            _wait(MUNGE_SOCKET.exists, "munged's socket")
        for daemon, port, pid in (
            ("slurmdbd", ports["dbd"], root / "slurmdbd.pid"),
            ("slurmctld", ports["ctld"], root / "slurmctld.pid"),
        ):
            _run(f"/usr/sbin/{daemon}", env=env)
            started.append((daemon, pid))
            _wait(lambda port=port: _port_open(port), daemon, logs=(root / f"{daemon}.log",))
        for args in (
            ("add", "cluster", "taskvec"),
            ("add", "account", ACCOUNT, "Description=taskvec tests", "Organization=taskvec"),
            ("add", "user", "root", f"Account={ACCOUNT}"),
        ):
            _run("sacctmgr", "-i", *args, env=env, check=False)
        _run("/usr/sbin/slurmd", env=env)
        started.append(("slurmd", root / "slurmd.pid"))

        def node_ready() -> bool:
            state = _run("sinfo", "-h", "-o", "%T", env=env, check=False).stdout.strip()
            return state in ("idle", "mixed", "allocated")

        _wait(node_ready, "the node to come up", logs=(root / "slurmd.log", root / "slurmctld.log"))
        yield env
    finally:
        for _daemon, handle in reversed(started):
            if isinstance(handle, subprocess.Popen):
                _run("mariadb-admin", "shutdown", check=False)
                try:
                    handle.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    handle.kill()
                continue
            with contextlib.suppress(OSError, ValueError):
                pid = int(handle.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                    time.sleep(0.2)
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        SYSTEM_CONF.unlink(missing_ok=True)


def main() -> int:
    with local_slurm() as env:
        job = _run("sbatch", "--parsable", f"--account={ACCOUNT}", "--wrap", "hostname", env=env).stdout.strip()
        print(f"submitted job {job}")
        _wait(
            lambda: "COMPLETED" in _run("sacct", "-n", "-X", "-j", job, "-o", "State", env=env).stdout,
            f"job {job} to complete",
        )
        print(_run("sacct", "-j", job, "-o", "JobID,JobName,State,ExitCode", env=env).stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
