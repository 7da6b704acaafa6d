"""Start Prefect's ephemeral API server while the command imports torch and the flows.

Without PREFECT_API_URL, Prefect 3 starts a temporary server in a subprocess the first time a flow
asks for a client, and waits for it (about 10-15 s on 2 cores: a fresh interpreter, the server's
imports, its database). `trans-encoder distill` otherwise spends those seconds first importing torch,
transformers and the flows, then booting the server. `boot_in_background()` starts the same server
(Prefect's own `SubprocessASGIServer`, a per-process singleton, so the flow's client finds it
running) on a thread before those imports; `BackgroundBoot.wait()` joins it before the flow starts,
so the flow never talks to a server that is not answering yet. The server module is imported on
the calling thread (the thread itself only spawns the process and polls its health: no imports race
with the main thread's). If the early start fails, `wait()` only logs it: the flow's client then
starts the server itself and reports any failure as Prefect always does. With PREFECT_API_URL set,
or with `TRANS_ENCODER_EARLY_SERVER=0`, nothing is started here.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


def _wanted() -> bool:
    if os.environ.get("TRANS_ENCODER_EARLY_SERVER", "1") == "0":
        return False
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    # the condition under which Prefect's get_client starts the ephemeral server itself
    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_EPHEMERAL_ENABLED)


@dataclass
class BackgroundBoot:
    """A server start running on a thread (`thread` None: nothing was started)."""

    thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)

    def wait(self) -> None:
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        for exc in self.errors:
            logger.debug("early Prefect server start failed (the flow retries it): %r", exc)


def boot_in_background() -> BackgroundBoot:
    """Start the ephemeral server on a daemon thread when the flow would start one anyway."""
    if not _wanted():
        return BackgroundBoot()
    from prefect.server.api.server import SubprocessASGIServer

    boot = BackgroundBoot()
    server = SubprocessASGIServer()  # the instance the flow's client will ask for

    def start() -> None:
        try:
            server.start()
        except Exception as exc:  # the flow's own start reports it
            boot.errors.append(exc)

    boot.thread = threading.Thread(target=start, name="prefect-ephemeral-boot", daemon=True)
    boot.thread.start()
    return boot
