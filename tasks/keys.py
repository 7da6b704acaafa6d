"""What keys each stage: its config part and its input digests, declared once per stage.

A stage's cache key is `stage_key(name, config, inputs)` (tasks/stages.py). This module is the only
place that says which settings and which inputs determine a stage's output, so the keys can be read
side by side and pinned by tests (tests/flows/golden/keys-*.json hold the keys that stores written
before the flows became one carry; they must keep coming back cached). Options added after a stage's
first release enter its config only when they are on, so the keys of earlier runs stay valid.
"""

from __future__ import annotations

from typing import Any

from trans_encoder_core.config import BiEncoderConfig, ContrastiveConfig, CrossEncoderConfig

Key = tuple[dict[str, Any], dict[str, str]]
Ref = dict[str, Any]


def _dev(dev: Ref | None) -> str:
    """The selection set's digest: STS-B dev's files, or the run's own dev set's content and reading
    options (a dev file's `eval_file_digest`, which covers its metric; a binary task's dev split)."""
    return dev["digest"] if dev else "none"


def _with_precision(config: dict[str, Any], precision: str | None) -> dict[str, Any]:
    """The resolved precision, only where it is not the one the stage always had (None)."""
    return config if precision is None else {**config, "precision": precision}


def bi_scores(bi: BiEncoderConfig, model: Ref, pairs: Ref, precision: str | None = None) -> Key:
    """Step A: the configured pooling and length (and scoring precision unless fp32); the labelling
    model and the pool."""
    config = _with_precision({"pooling": bi.pooling, "max_seq_length": bi.max_seq_length}, precision)
    return config, {"model": model["digest"], "pairs": pairs["digest"]}


def cross_scores(cross: CrossEncoderConfig, model: Ref, pairs: Ref, precision: str | None = None) -> Key:
    """Step C: the pair length and whether both orders are averaged (and scoring precision unless
    fp32); the model and the pool."""
    config = {"max_length": cross.max_length, "symmetric": cross.symmetric_labels}
    return _with_precision(config, precision), {"model": model["digest"], "pairs": pairs["digest"]}


def train_cross(
    cross: CrossEncoderConfig, labels: Ref, start: Ref, dev: Ref | None, precision: str | None = None
) -> Key:
    """Step B: every cross setting that shapes training (not the start's name: its digest is an input)."""
    scoring_only = {"score_batch_size", "score_precision", "eval_max_length", "model"}
    config = _with_precision(cross.model_dump(exclude=scoring_only), precision)
    return config, {"labels": labels["digest"], "start": start["digest"], "dev": _dev(dev)}


def train_bi(
    bi: BiEncoderConfig,
    labels: Ref,
    start: Ref,
    dev: Ref | None,
    *,
    mix_labels: Ref | None,
    mix_weight: float,
    calibrate: bool,
    precision: str | None = None,
) -> Key:
    """Step D: the bi settings with the resolved pooling, the label mix and calibration when on."""
    config = {
        **bi.model_dump(exclude={"score_batch_size", "score_precision", "model"}),
        "mix_weight": mix_weight,
    }
    if calibrate:
        config["calibration"] = "quantile"
    config = _with_precision(config, precision)
    uses_mix = mix_labels is not None and (mix_weight > 0 or calibrate)
    inputs = {
        "labels": labels["digest"],
        "start": start["digest"],
        "dev": _dev(dev),
        "mix": mix_labels["digest"] if uses_mix and mix_labels else "none",
    }
    return config, inputs


def init_bi(
    method: str,
    recipe: ContrastiveConfig,
    max_sentences: int | None,
    bi: BiEncoderConfig,
    model: Ref,
    pairs: Ref,
    dev: Ref | None,
    precision: str | None = None,
) -> Key:
    """Unsupervised initialisation (§2.1): the seeded recipe, the sentence limit, pooling and length."""
    config = {
        "method": method,
        "recipe": recipe.model_dump(),
        "max_sentences": max_sentences,
        "pooling": bi.pooling,
        "max_seq_length": bi.max_seq_length,
    }
    config = _with_precision(config, precision)
    return config, {"model": model["digest"], "pairs": pairs["digest"], "dev": _dev(dev)}


def average_labels(kind: str, labels: dict[str, Ref]) -> Key:
    """The averaging stage of mutual distillation: which labels and from which models."""
    inputs = {name: result["digest"] for name, result in labels.items()}
    return {"kind": kind, "models": sorted(labels)}, inputs


def evaluate(
    kind: str,
    tasks: list[str],
    models: dict[str, Ref],
    bis: dict[str, BiEncoderConfig],
    crosses: dict[str, CrossEncoderConfig],
    data: Ref | None,
    sets: dict[str, Ref] | None = None,
    precisions: dict[str, str | None] | None = None,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """An evaluation: of one model (stage `evaluate`) or of the mean of several (an ensemble stage).

    The run's own sets (a dev file, test files, a binary task's sets; `tasks.eval_sets`) enter only
    when there are any: their names and metrics in the config, their content digests as inputs; the
    scoring precisions (name -> resolved, None for fp32) only when one is not fp32.
    """
    names = sorted(models)
    lengths = [bis[n].max_seq_length if kind == "bi" else crosses[n].eval_max_length for n in names]
    poolings = [bis[n].pooling if kind == "bi" else None for n in names]
    data_digest = data["digest"] if data else "none"
    own = {f"set:{name}": ref["digest"] for name, ref in sorted((sets or {}).items())}
    metrics = {"sets": {name: ref["metric"] for name, ref in sorted(sets.items())}} if sets else {}
    resolved = [(precisions or {}).get(n) for n in names]
    if len(names) == 1:
        config = {"kind": kind, "tasks": sorted(tasks), "length": lengths[0], "pooling": poolings[0]}
        inputs = {"model": models[names[0]]["digest"], "data": data_digest}
        return "evaluate", _with_precision(config | metrics, resolved[0]), inputs | own
    config = {"kind": kind, "tasks": sorted(tasks), "lengths": lengths, "pooling": poolings}
    if any(resolved):
        config["precisions"] = [p or "fp32" for p in resolved]
    inputs = {f"model:{n}": models[n]["digest"] for n in names} | {"data": data_digest}
    return f"evaluate_{kind}_ensemble", config | metrics, inputs | own


def ingest_file(options: dict[str, Any], file_sha256: str) -> Key:
    """A user's pair file: how it is read and subsampled, and its bytes."""
    return {"kind": "file", **options}, {"file": file_sha256}


def ingest_benchmark(options: dict[str, Any], data_digest: str) -> Key:
    """A benchmark pool: which pool and subsample, and the benchmark files it reads."""
    return {"kind": "benchmark", **options}, {"data": data_digest}


def ingest_binary(options: dict[str, Any], files_digest: str) -> Key:
    """A binary task's pool (paper §1.7): which task and subsample, and the task files it reads."""
    return {"kind": "binary", **options}, {"data": files_digest}
