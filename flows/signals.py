"""Stopping a run on SIGTERM or Ctrl-C without waiting for the stage in progress.

Python delivers signals to the main thread only, and Prefect turns SIGTERM into a crash of the flow
there; but the flow then waits for its task runner, whose thread is still training, so without help
a SIGTERM (or Ctrl-C) stops the run only once the current stage has finished, possibly an hour later,
and the stage even commits. `stop_stages_on_signals` chains onto whatever handlers are installed
(Prefect's, the CLI's): the handler first asks every training and scoring loop of this process to
end at its next step or batch (`trans_encoder_core.runtime.request_stop`), then does what it did.
The last checkpoint stays in the store, so rerunning the command resumes from it.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from trans_encoder_core.runtime import clear_stop, request_stop

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_stages_on_signals() -> None:
    """Clear an earlier stop request and chain `request_stop` onto the SIGTERM and SIGINT handlers
    (main thread only: elsewhere handlers cannot be installed, and the caller's own apply)."""
    clear_stop()
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if not getattr(current, "stops_stages", False):
            signal.signal(signum, _chained(current))


def _chained(previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> Any:
        request_stop()
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_DFL:  # what the signal would have done: end the process
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        return None

    handler.stops_stages = True  # type: ignore[attr-defined]
    return handler
