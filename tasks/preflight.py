"""Checks a run makes before its first stage: every starting model is loadable (config, tokenizer,
readable weights, a cross-encoder head of the right shape), so a bad model fails in seconds with the
file named, not after the pool was ingested and labelled."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.store import Store
from trans_encoder_core.model_check import check_model


def starting_refs(plms: list[Any]) -> list[tuple[str, str]]:
    """(model reference, kind) of every PLM's starting bi- and cross-encoder, each pair once."""
    refs = []
    for plm in plms:
        refs += [(plm.bi.model, "bi"), (plm.cross.model or plm.bi.model, "cross")]
    return list(dict.fromkeys(refs))


@task(cache_policy=NO_CACHE, persist_result=False)
def check_starting_models(store_root: str, refs: list[tuple[str, str]]) -> None:
    """Raise `ModelLoadError` naming the first starting model that cannot be loaded.

    Store artifacts (e.g. a retrain's previous version) are skipped: their files are checked against
    their recorded sha256 when they are read.
    """
    store = Store(store_root)
    for ref, kind in refs:
        if not store.contains(ref):
            check_model(ref, kind)  # type: ignore[arg-type]
