"""Mutual distillation on a real Dask cluster reporting to a real Prefect server.

A `prefect server start` subprocess (own PREFECT_HOME, free port) and a `LocalCluster` of 2 worker
processes: the two PLMs' stages must overlap in time, and every label and every trained weight must
equal the serial run's, bit for bit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from safetensors.torch import load_file

from flows.distill import run_distill
from tasks.store import Store
from tests.flows.test_mutual import build_plm_models, mutual_config, overlapping, results_of
from tests.prefect_home import fresh_prefect_home

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def prefect_backend() -> Iterator[None]:
    """This module talks to its own Prefect server instead of the session's test harness."""
    yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its children (its own process group, started by this module)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on 127.0.0.1 and a free port; yields its API URL."""
    home = fresh_prefect_home(tmp_path_factory.mktemp("prefect-server"))
    port, prefect = _free_port(), shutil.which("prefect", path=str(Path(sys.executable).parent))
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    args = [prefect or "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off"]
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
        APILogWorker.drain_all(timeout=5)  # send the runs' last logs while the server is still up
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def plm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_plm_models(tmp_path_factory.mktemp("dask-models"))


def _worker_env(api_url: str, home: Path) -> dict[str, str]:
    return {
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }


def _outputs(summary: dict[str, Any]) -> dict[tuple[Any, str, int], Any]:
    """Every label column and every trained weight a run wrote, by (model, stage, cycle)."""
    store, out = Store(summary["config"]["store"]), {}
    for s in summary["stages"]:
        folder = Path(store.path(s["uri"]))
        if (folder / "labels.parquet").is_file():
            table = pq.read_table(folder / "labels.parquet")
            out[(s["model"], s["name"], s["cycle"])] = {
                c: table[c].to_numpy() for c in table.column_names[3:]
            }
        elif (folder / "model.safetensors").is_file():
            out[(s["model"], s["name"], s["cycle"])] = load_file(folder / "model.safetensors")
    return out


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_dask_cluster_trains_the_plms_in_parallel_and_matches_the_serial_run(
    prefect_server: str, plm_models: dict[str, Path], tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster
    from prefect_dask import DaskTaskRunner

    env = _worker_env(prefect_server, tmp_path / "worker-home")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        cluster_args = {"n_workers": 2, "processes": True, "threads_per_worker": 1, "dashboard_address": None}
        with LocalCluster(**cluster_args, env=env) as cluster, Client(cluster) as client:
            client.run(exec, "import tasks.distill, tasks.averaging")  # import torch etc. once per worker
            on_dask = run_distill(
                mutual_config(plm_models, tmp_path / "dask-store", None),
                DaskTaskRunner(address=cluster.scheduler_address),
            )
        serial = run_distill(
            mutual_config(plm_models, tmp_path / "serial-store", None), ThreadPoolTaskRunner(1)
        )
    assert not any(s["cached"] for s in on_dask["stages"])
    assert overlapping(on_dask, "bert", "roberta"), "the two PLMs' stages should run at the same time"
    ours, theirs = _outputs(on_dask), _outputs(serial)
    assert len(ours) == 2 * 4 + 2 and ours.keys() == theirs.keys()
    assert [key for key in ours if not _equal(ours[key], theirs[key])] == []
    assert results_of(on_dask) == results_of(serial)
