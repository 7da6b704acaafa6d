"""Small tasks that fingerprint the run's external inputs (models, benchmark folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import data_digest, model_input
from tasks.store import Store
from trans_encoder_core.benchmarks import available_tasks


@task(cache_policy=NO_CACHE, persist_result=False)
def resolve_model(store_root: str, ref: str) -> dict[str, str]:
    """A model reference with the content digest that keys the stages using it."""
    return model_input(Store(store_root), ref)


@task(cache_policy=NO_CACHE, persist_result=False)
def resolve_data(root: str | None, tasks: list[str]) -> dict[str, Any]:
    """Benchmark folder facts: its digest for evaluation, and the STS-B dev fingerprint for selection."""
    if root is None or not Path(root).is_dir():
        return {
            "data": None,
            "dev": None,
            "reason": f"benchmark folder {root!r} not found" if root else "not set",
        }
    availability = available_tasks(root)
    present = [t for t in tasks if availability.get(t) is None]
    data = {"data": str(Path(root).resolve()), "digest": data_digest(root, present)}
    dev = None
    if availability.get("stsb") is None:
        dev = {"data": data["data"], "digest": data_digest(root, ["stsb"])}
    return {"data": data, "dev": dev, "missing": {t: r for t, r in availability.items() if r and t in tasks}}
