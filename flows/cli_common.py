"""What every `trans-encoder` command shares: `--set KEY=VALUE` overrides and config errors as one line."""

from __future__ import annotations

import json
from typing import Any

from trans_encoder_core.errors import ConfigError


class UsageError(ConfigError):
    """A command line that cannot be turned into a run (reported as one `error:` line, exit 2)."""


def parse_value(text: str) -> Any:
    """A `--set` value: JSON when it parses (numbers, booleans, null, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_sets(base: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a nested dict (config field paths)."""
    for item in sets:
        if "=" not in item:
            raise UsageError(f"--set expects KEY=VALUE (e.g. cycles=2), got {item!r}.")
        path, value = item.split("=", 1)
        node = base
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {path}: {part} is not a group of settings.")
        node[leaf] = parse_value(value)
    return base


def config_error(exc: Any) -> ConfigError:
    """A pydantic ValidationError as one `ConfigError` naming each bad field, its rule and its value."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "config"
        got = repr(err.get("input"))
        problems.append(f"{field}: {err['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})")
    return ConfigError(
        "Configuration expects valid values, got: "
        + "; ".join(problems)
        + "; fix them with --set FIELD=VALUE (or the matching option) and rerun."
    )
