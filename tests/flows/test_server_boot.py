"""The ephemeral Prefect server started early (flows/server_boot.py): the flow must use that server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.server_boot import boot_in_background
from tests.prefect_home import fresh_prefect_home
from tests.script_run import run_script

# In a fresh interpreter without PREFECT_API_URL: boot early, run a flow, report what it talked to.
SCRIPT = """
import json, httpx
from flows.server_boot import boot_in_background
from tests.script_run import run_script
boot = boot_in_background()
started = boot.thread is not None
boot.wait()
from prefect import flow, get_client
from prefect.server.api.server import SubprocessASGIServer
server = SubprocessASGIServer()
running_before_flow = server.running
health = httpx.get(server.api_url + "/health").status_code if running_before_flow else None

@flow
def probe():
    with get_client(sync_client=True) as client:
        return client.api_url.__str__()

used = probe()
print(json.dumps({"started": started, "running": running_before_flow, "health": health,
                  "server": server.api_url, "used": used,
                  "instances": len(SubprocessASGIServer._instances)}))
"""


def _run(tmp_path: Path, **env: str) -> dict[str, object]:
    environ = {**os.environ, "PREFECT_HOME": str(fresh_prefect_home(tmp_path / "home")), **env}
    environ.pop("PREFECT_API_URL", None)
    return run_script(SCRIPT, environ)


def test_the_flow_runs_on_the_server_booted_before_the_imports(tmp_path: Path) -> None:
    seen = _run(tmp_path)
    assert seen["started"] is True
    assert seen["running"] is True and seen["health"] == 200
    # the flow's client found the early server: the same address, no second server instance
    assert str(seen["used"]).rstrip("/") == str(seen["server"]).rstrip("/")
    assert seen["instances"] == 1


def test_switched_off_the_flow_starts_the_server_itself(tmp_path: Path) -> None:
    seen = _run(tmp_path, TRANS_ENCODER_EARLY_SERVER="0")
    assert seen["started"] is False and seen["running"] is False
    assert str(seen["used"]).rstrip("/") == str(seen["server"]).rstrip("/")


def test_nothing_is_started_when_a_server_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    # this process runs under the test harness, which sets PREFECT_API_URL
    from prefect.settings import PREFECT_API_URL

    assert PREFECT_API_URL.value()
    boot = boot_in_background()
    assert boot.thread is None
    boot.wait()  # a no-op
