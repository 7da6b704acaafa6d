"""A real Prefect stack for end-to-end tests: `prefect server start`, a process work pool, the
deployments of prefect.yaml (`prefect deploy --all`) and `prefect worker start`, all on 127.0.0.1 with a
temporary PREFECT_HOME. Every process runs in its own process group and is stopped with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.prefect_home import fresh_prefect_home

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "te-local"
# Settings of every process of the stack: offline, no UI, no scheduler (runs are started by the test
# and by the event trigger), fast worker polling.
STACK_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "false",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "2",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}
# Variables of the calling environment that would change what the flows do.
DROPPED = ("TRANS_ENCODER_DATA", "TRANS_ENCODER_FAULT", "PREFECT_API_KEY", "PREFECT_PROFILE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `check` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class PrefectStack:
    """Start, use and stop the processes of one Prefect installation."""

    def __init__(self, home: Path) -> None:
        self.home = fresh_prefect_home(home)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        env = {k: v for k, v in os.environ.items() if k not in DROPPED}
        self.env = env | STACK_SETTINGS | {"PREFECT_HOME": str(home), "PREFECT_API_URL": self.api_url}
        self.processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.home / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "prefect"), *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((name, proc, log))
        return proc

    def run(self, *args: str, timeout: float = 120, program: str = "prefect") -> str:
        """Run a command of the stack's environment to completion; its output, or an error with it."""
        result = subprocess.run(
            [str(BIN / program), *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> None:
        """Server, work pool, deployments from prefect.yaml, worker."""
        self.spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
        wait_for(self.healthy, timeout=120, what=f"the Prefect server on port {self.port}")
        self.run("work-pool", "create", POOL, "--type", "process")
        self.run("--no-prompt", "deploy", "--all", timeout=240)
        self.spawn("worker", "worker", "start", "--pool", POOL, "--type", "process")

    def stop(self, grace: float = 20.0) -> None:
        """Terminate every process group (worker first), wait `grace` seconds, kill what still runs."""
        for _, proc, _ in reversed(self.processes):
            _signal_group(proc, signal.SIGTERM)
        for _, proc, _ in reversed(self.processes):
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        self.processes.clear()

    def logs(self, lines: int = 60) -> str:
        """The last lines of every process's log (for failure messages)."""
        parts = []
        for name, _, log in self.processes:
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            parts.append(f"---- {name} ----\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)  # the group holds the process and the flow runs it started
    except ProcessLookupError:
        pass
