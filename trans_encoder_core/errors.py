"""Exception hierarchy of the Trans-Encoder core.

Every error raised on purpose by the core derives from :class:`TransEncoderError`, and also from the
builtin a caller would naturally catch (``ValueError``), so ``except ValueError`` keeps working.

Messages follow the project convention (``conventions.md`` §8): "Component expects X, got Y; do Z",
naming the file, the row and the field where they are known. The structured parts are also kept as
attributes so callers (the CLI, Prefect tasks) can report them without parsing the message.

All exceptions survive a pickle round trip with their attributes, because Prefect may serialise a
failed task's exception.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BenchmarkDataError",
    "ConfigError",
    "InputDataError",
    "ModelLoadError",
    "TransEncoderError",
]


class TransEncoderError(Exception):
    """Base class of every error raised on purpose by ``trans_encoder_core``."""


class InputDataError(TransEncoderError, ValueError):
    """A user-provided pair file or table does not meet the data contract (``conventions.md`` §4).

    Attributes:
        source: The file name or URI (or a label for an in-memory table).
        row: Where the problem is: the 1-based line number for CSV/TSV/JSONL files, the 0-based
            row index for Parquet files and in-memory tables; ``None`` when not row-specific.
        field: The column concerned, or ``None``.
    """

    def __init__(
        self, message: str, *, source: str | None = None, row: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.row = row
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class BenchmarkDataError(TransEncoderError, ValueError):
    """A benchmark file (STS12–16, STS-B, SICK-R) is missing, short or malformed (``algorithm.md`` §3).

    Attributes:
        path: The file or folder concerned, as a string, or ``None``.
        expected: The expected number of pairs, where a count was checked.
        found: The number of pairs found, where a count was checked.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        expected: int | None = None,
        found: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.found = found

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class ConfigError(TransEncoderError, ValueError):
    """A configuration value or argument is invalid (``conventions.md`` §3)."""


class ModelLoadError(TransEncoderError, ValueError):
    """A saved model folder cannot be loaded or does not match what the caller expects."""


def _rebuild(cls: type[TransEncoderError], message: str, state: dict[str, Any]) -> TransEncoderError:
    """Re-create an exception with keyword attributes after unpickling."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc
