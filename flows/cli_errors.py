"""How the command line ends on an expected error: one `error:` line, exit status 2, no traceback.

Expected errors are the project's own (`TransEncoderError`: bad input, bad config, missing data, a
model that cannot load, a store that cannot be written), pydantic's `ValidationError`, and OS errors
that fail the same way on every attempt (`tasks.failures`). Prefect logs every failed flow and task
run with its traceback; for an expected error `QuietExpectedErrors` keeps those tracebacks out of
the terminal (the records still reach the Prefect API, so the UI shows them, and the run's state
message there is the same line). Any other exception is a bug: its traceback is shown as always.
`--debug` (or `TRANS_ENCODER_DEBUG=1`, or `PREFECT_LOGGING_LEVEL=DEBUG`) shows everything.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

DEBUG_ENV = "TRANS_ENCODER_DEBUG"


def is_expected(exc: BaseException | None) -> bool:
    """Whether `exc` is a user-facing error (reported as one line), not a bug."""
    from pydantic import ValidationError

    from tasks.failures import is_deterministic_os_error
    from trans_encoder_core.errors import TransEncoderError

    return isinstance(exc, TransEncoderError | ValidationError) or (
        exc is not None and is_deterministic_os_error(exc)
    )


class QuietExpectedErrors(logging.Filter):
    """Drop console log records that carry the traceback of an expected error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        return not is_expected(exc)


def debug_requested(argv: list[str]) -> bool:
    """`--debug` anywhere on the command line, `TRANS_ENCODER_DEBUG=1`, or Prefect logging at DEBUG."""
    level = os.environ.get("PREFECT_LOGGING_LEVEL", "").upper()
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0") or level == "DEBUG"


def quiet_console_tracebacks() -> list[tuple[logging.Handler, logging.Filter]]:
    """Add `QuietExpectedErrors` to the console handlers Prefect configured; return what was added."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's console handler on the root logger, as a flow run would set it up

    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("prefect", "uvicorn", "fastapi"))]
    handlers = {id(h): h for log in loggers for h in log.handlers}.values()  # one handler, several loggers
    added = []
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            quiet = QuietExpectedErrors()
            handler.addFilter(quiet)
            added.append((handler, quiet))
    return added


def restore_console(added: list[tuple[logging.Handler, logging.Filter]]) -> None:
    for handler, quiet in added:
        handler.removeFilter(quiet)


def report(exc: BaseException, *, debug: bool) -> int:
    """Print the one `error:` line of an expected error (its traceback first with --debug); return 2."""
    from pydantic import ValidationError

    from flows.cli_common import config_error
    from tasks.failures import os_error_message
    from trans_encoder_core.errors import TransEncoderError

    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ValidationError):
        message: Any = config_error(exc)
    elif isinstance(exc, OSError) and not isinstance(exc, TransEncoderError):
        message = os_error_message(exc)
    else:
        message = exc
    print(f"error: {message}", file=sys.stderr)
    return 2


def stop_now(exc: BaseException) -> NoReturn:
    """End the process at once after SIGTERM (Prefect's `TerminationSignal`) or Ctrl-C.

    The signal reaches the main thread only: a stage running in a task-runner thread would keep the
    process alive until it finished (flows/signals.py asks it to stop at its next step). So: the exit
    handlers (they stop Prefect's temporary server), one line, then `os._exit`. The store is
    crash-safe, so the same command resumes from the last checkpoint.
    """
    signum = int(getattr(exc, "signal", signal.SIGINT))
    atexit._run_exitfuncs()  # what a normal exit runs (its log lines come first); threads are not waited for
    print(
        f"error: stopped by {signal.Signals(signum).name}; finished stages and the last checkpoint are in "
        "the store: rerun the same command to resume.",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(128 + signum)
