"""A throwaway single-node SLURM cluster on localhost, for the tests of ``hydra/launcher=submitit_slurm``.

munged, MariaDB, slurmdbd (so that ``sacct`` knows how a job ended: without it submitit waits forever on
a job killed before it wrote a result), slurmctld and slurmd, all run as the current (root) user with
every file under one directory and every port chosen free; a fake GPU gres lets jobs ask for
``gpus_per_node=1``. Every daemon started is stopped by its PID. Also a command for trying it by hand:

    python -m tests.slurm_cluster DIR    # starts the cluster, prints SLURM_CONF, stops it on Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sacctmgr")
CLUSTER = "bench"
FAKE_GPU_FILES = ("/dev/null", "/dev/zero")  # gres/gpu counts device files; these are harmless ones


class ClusterError(RuntimeError):
    """The cluster could not start here (missing packages, not root, a daemon that died)."""


def missing_requirements() -> str | None:
    """Why a cluster cannot start on this machine, or None."""
    absent = [d for d in DAEMONS if not Path(binary(d)).exists()]
    if absent:
        return f"SLURM/MariaDB/munge not installed ({', '.join(absent)}): scripts/install_slurm.sh"
    if os.geteuid() != 0:
        return "the single-node SLURM cluster runs its daemons as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise ClusterError(f"timed out waiting for {what}")


def binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class LocalSlurm:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- set-up -------------------------------------------------------------------------------------
    def write_configs(self) -> None:
        r = self.root
        for d in ("etc", "log", "run", "state", "spool", "db"):
            (r / d).mkdir(parents=True, exist_ok=True)
        self.db_port, self.dbd_port = free_port(), free_port()
        ctld_port, slurmd_port = free_port(), free_port()
        cpus = os.cpu_count() or 1
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        auth = f"AuthType=auth/munge\nAuthInfo=socket={r}/run/munge.sock\n"
        self.conf.write_text(
            f"ClusterName={CLUSTER}\nSlurmctldHost={socket.gethostname()}(127.0.0.1)\n{auth}"
            f"SlurmUser=root\nSlurmdUser=root\nSlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/run/slurmctld.pid\nSlurmdPidFile={r}/run/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\nSchedulerType=sched/backfill\n"
            "ReturnToService=2\nMailProg=/bin/true\nJobAcctGatherType=jobacct_gather/none\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
            f"AccountingStoragePass={r}/run/munge.sock\n"  # the munge socket for slurmdbd connections
            f"AccountingStoragePort={self.dbd_port}\nGresTypes=gpu\nInactiveLimit=0\nKillWait=5\n"
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
            f"Gres=gpu:{len(FAKE_GPU_FILES)} State=UNKNOWN\n"
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
        )
        # a fake GPU: gres bookkeeping without a device (jobs run on the CPU)
        files = ",".join(FAKE_GPU_FILES)
        (r / "etc" / "gres.conf").write_text(f"NodeName=localhost Name=gpu File={files}\n")
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.dbd_port}\nSlurmUser=root\n"
            f"PidFile={r}/run/slurmdbd.pid\nLogFile={r}/log/slurmdbd.log\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
            "StorageUser=slurm\nStoragePass=slurm\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 (lives as long as the daemon)
        proc = subprocess.Popen([binary(name), *args], env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            log = (self.root / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
            raise ClusterError(f"{name} exited with {self.procs[name].returncode}:\n{log}")
        return True

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        # stdin closed: under pytest-xdist a worker's stdin is its channel to the controller
        return subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=check, timeout=60)  # fmt: skip

    def ok(self, *cmd: str) -> bool:
        try:
            return self.run(*cmd, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self) -> LocalSlurm:
        r = self.root
        self.write_configs()
        key = r / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.spawn("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={r}/run/munge.sock",
                   f"--pid-file={r}/run/munged.pid", f"--log-file={r}/log/munged.log",
                   f"--seed-file={r}/run/munged.seed")  # fmt: skip
        wait_for(lambda: self.alive("munged") and (r / "run" / "munge.sock").exists(), "munged")

        self.run(binary("mariadb-install-db"), f"--datadir={r}/db", "--user=root",
                 "--auth-root-authentication-method=socket", "--skip-test-db")  # fmt: skip
        sock = f"{r}/run/mysqld.sock"
        self.spawn("mariadbd", "--no-defaults", f"--datadir={r}/db", f"--socket={sock}", "--user=root",
                   "--bind-address=127.0.0.1", f"--port={self.db_port}", f"--pid-file={r}/run/mariadb.pid",
                   "--innodb-buffer-pool-size=64M")  # fmt: skip
        ping = ("mariadb-admin", f"--socket={sock}", "ping")
        wait_for(lambda: self.alive("mariadbd") and self.ok(*ping), "MariaDB")
        sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")  # fmt: skip
        self.run("mariadb", f"--socket={sock}", "-e", sql)

        self.spawn("slurmdbd", "-D")
        wait_for(lambda: self.alive("slurmdbd") and self.ok("sacctmgr", "-n", "list", "cluster"), "slurmdbd")
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self.spawn("slurmctld", "-D", "-i")
        wait_for(lambda: self.alive("slurmctld") and self.ok("scontrol", "ping"), "slurmctld")
        self.spawn("slurmd", "-D", "-N", "localhost")
        idle = lambda: "idle" in self.run("sinfo", "-h", "-o", "%t").stdout  # noqa: E731
        wait_for(lambda: self.alive("slurmd") and idle(), "slurmd")
        return self

    # -- tear-down ----------------------------------------------------------------------------------
    def cancel_jobs(self) -> None:
        """Cancel what is still queued or running and let slurmd end it: a job step left running when
        slurmd stops would live on as an orphaned slurmstepd."""
        if "slurmctld" not in self.procs or self.procs["slurmctld"].poll() is not None:
            return
        self.ok("scancel", "--full", f"--user={os.getuid()}")
        with contextlib.suppress(ClusterError):
            wait_for(lambda: not self.run("squeue", "-h", check=False).stdout.strip(), "an empty queue", 30)

    def stop(self) -> None:
        """Cancel every job, then stop every daemon this object started, newest first, by PID: TERM,
        then KILL after 10 s."""
        self.cancel_jobs()
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()

    def __enter__(self) -> LocalSlurm:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    with LocalSlurm(Path(sys.argv[1])) as cluster:
        print(f"export SLURM_CONF={cluster.conf}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
