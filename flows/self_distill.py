"""The self-distillation flow: the whole algorithm in one loop (algorithm.md §1.4)."""

from __future__ import annotations

import os
from typing import Any

from prefect import flow

from flows.config import SelfDistillConfig
from flows.report import publish_report, select_best
from tasks.distill import bi_scores, cross_scores, evaluate, train_bi, train_cross
from tasks.ingest import ingest_pairs
from tasks.init_stage import init_bi
from tasks.resolve import resolve_data, resolve_model
from trans_encoder_core.benchmarks import DATA_ENV_VAR


def as_model(stage: dict[str, Any]) -> dict[str, str]:
    """A trained-model stage result as a model input of later stages."""
    return {"ref": stage["uri"], "digest": stage["digest"]}


def pair_source(cfg: SelfDistillConfig, data_root: str | None) -> dict[str, Any]:
    common = {"max_pairs": cfg.max_pairs, "seed": cfg.seed}
    if cfg.pairs is not None:
        return {
            "kind": "file",
            "uri": cfg.pairs,
            "format": cfg.pairs_format,
            "sentence1_column": cfg.sentence1_column,
            "sentence2_column": cfg.sentence2_column,
            "on_invalid": "drop" if cfg.drop_invalid_rows else "error",
            **common,
        }
    if data_root is None:
        raise ValueError(
            "self_distill expects a pair file (pairs=...) or a benchmark folder for the benchmark pool, got "
            f"neither; pass --pairs FILE, or --data DIR / set {DATA_ENV_VAR}."
        )
    return {"kind": "benchmark", "data": data_root, "pool": cfg.pool, **common}


def seeded(cfg: SelfDistillConfig) -> tuple[Any, Any]:
    """The bi and cross configs with the run's seed applied to their fits."""
    bi = cfg.bi.model_copy(update={"fit": cfg.bi.fit.model_copy(update={"seed": cfg.seed})})
    cross = cfg.cross.model_copy(update={"fit": cfg.cross.fit.model_copy(update={"seed": cfg.seed})})
    return bi, cross


@flow(name="self-distill", log_prints=True)
def self_distill(config: SelfDistillConfig = SelfDistillConfig()) -> dict[str, Any]:  # noqa: B008
    """Trans-Encoder self-distillation with cached stages; rerun with the same config to resume."""
    cfg, store = config, config.store
    data_root = cfg.data or os.environ.get(DATA_ENV_VAR) or None
    data = resolve_data(data_root, cfg.eval_tasks)
    dev = data["dev"] if cfg.dev_selection else None
    bi_cfg, cross_cfg = seeded(cfg)
    common = {"device": cfg.device, "checkpoint_steps": cfg.checkpoint_steps}
    pairs = ingest_pairs(store, pair_source(cfg, data["data"] and data["data"]["data"]))
    start_bi = resolve_model(store, cfg.bi.model)
    start_cross = resolve_model(store, cfg.cross.model or cfg.bi.model)
    stages: list[dict[str, Any]] = [pairs]
    if cfg.init_method != "none":
        unsup = init_bi(
            store, start_bi, pairs, bi_cfg, cfg.init_method, cfg.unsup, dev, seed=cfg.seed, **common
        )
        stages.append(unsup)
        start_bi = as_model(unsup)
    start_eval = evaluate(store, start_bi, "bi", data["data"], cfg.eval_tasks, bi_cfg, cross_cfg, cfg.device)
    stages.append(start_eval)
    cycles, teacher = [], start_bi
    for c in range(1, cfg.cycles + 1):
        bi_labels = bi_scores(store, teacher, pairs, bi_cfg, cfg.device, c)
        cross = train_cross(
            store,
            bi_labels,
            start_cross if cfg.init == "refresh" else teacher,
            cross_cfg,
            dev,
            cycle=c,
            **common,
        )
        cross_labels = cross_scores(store, as_model(cross), pairs, cross_cfg, cfg.device, c)
        bi_start = start_bi if cfg.init == "refresh" else as_model(cross)
        pooled = bi_cfg.model_copy(update={"pooling": bi_labels["metrics"]["pooling"]})
        bi = train_bi(
            store,
            cross_labels,
            bi_start,
            pooled,
            dev,
            cycle=c,
            mix_labels=bi_labels,
            mix_weight=cfg.bi_label_mix,
            calibrate=cfg.bi_label_calibration == "quantile",
            **common,
        )
        stages += [bi_labels, cross, cross_labels, bi]
        cycles.append(
            {"cycle": c, "bi": bi, "cross": cross, "bi_labels": bi_labels, "cross_labels": cross_labels}
        )
        teacher = as_model(bi)
    best = select_best(cycles, start_eval, dev_selection=cfg.dev_selection, select_start=cfg.select_start)
    finals = {}
    for kind in ("bi", "cross"):
        model = start_bi if best[kind] == 0 else as_model(cycles[best[kind] - 1][kind])
        finals[kind] = (
            start_eval
            if model is start_bi
            else evaluate(
                store, model, kind, data["data"], cfg.eval_tasks, bi_cfg, cross_cfg, cfg.device, best[kind]
            )
        )
        if finals[kind] is not start_eval:
            stages.append(finals[kind])
    return publish_report(cfg, stages, cycles, start_eval, finals, best, data)
