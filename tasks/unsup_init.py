"""Stage `init_bi`: a raw pretrained LM → the first bi-encoder, without labels (paper §2.1;
algorithm.md §1.2), by SimCSE or Mirror-BERT on the sentences of the pair pool.

Cached like every stage (tasks/stages.py; key in tasks/keys.py): keyed by the recipe, the pooling and
the digests of the starting model, the pair pool and the dev set; checkpointed into the store while
it trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks import keys
from tasks.artifacts import PAIRS_FILE, load_encoder, read_table
from tasks.checkpoints import checkpointed_fit, drop_checkpoints, fit_summary, resumed_step
from tasks.inputs import dev_set, stage_precision
from tasks.stages import pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.config import BiEncoderConfig, ContrastiveConfig, InitConfig
from trans_encoder_core.evaluation import bi_scorer, dev_evaluator
from trans_encoder_core.init import distinct_sentences, train_contrastive
from trans_encoder_core.runtime import resolve_device
from trans_encoder_core.training import TrainResult

STAGE = "init_bi"


def _summary(
    result: TrainResult, recipe: ContrastiveConfig, n_sentences: int, resumed: int | None
) -> dict[str, Any]:
    return {"n_sentences": n_sentences, "loss": recipe.loss, "temperature": recipe.temperature} | fit_summary(
        result, resumed
    )


@pipeline_task
def init_bi(
    store_root: str,
    model: dict[str, str],
    pairs: dict[str, Any],
    bi: BiEncoderConfig,
    method: str,
    unsup: InitConfig,
    dev: dict[str, str] | None = None,
    device: str = "auto",
    seed: int = 2021,
    checkpoint_steps: int = 0,
) -> dict[str, Any]:
    """Train `model` as a bi-encoder with `method` ("simcse" or "mirror_bert") on the pool's sentences.

    The result is a bi-encoder folder (pooling `bi.pooling`, saved with `bi.max_seq_length`) that later
    stages use as their starting bi-encoder; selection on STS-B dev when `dev` is given (SimCSE's
    published protocol).
    """
    store = Store(store_root)
    recipe = unsup.recipe(method)
    recipe = recipe.model_copy(update={"fit": recipe.fit.model_copy(update={"seed": seed})})
    where = resolve_device(device)
    precision, precision_key = stage_precision(recipe.fit.precision, where)
    key = keys.init_bi(method, recipe, unsup.max_sentences, bi, model, pairs, dev, precision_key)
    run = recipe.model_copy(update={"fit": recipe.fit.model_copy(update={"precision": precision})})

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, pairs["uri"], PAIRS_FILE)
        sentences = distinct_sentences(
            table["sentence1"].to_pylist(),
            table["sentence2"].to_pylist(),
            limit=unsup.max_sentences,
            seed=seed,
        )
        training = bi.model_copy(update={"max_seq_length": recipe.max_seq_length})
        enc = load_encoder(store, model["ref"], "bi", training, where)
        enc.packing = recipe.fit.packing
        dev_pairs = dev_set(dev)
        evaluate = (
            dev_evaluator(bi_scorer(enc, batch_size=bi.score_batch_size), dev_pairs) if dev_pairs else None
        )
        fit = checkpointed_fit(store, STAGE, key, 0)
        resumed = resumed_step(fit)
        result = train_contrastive(
            enc, sentences, run, evaluate=evaluate, checkpoint_steps=checkpoint_steps, **fit
        )
        enc.max_seq_length = bi.max_seq_length
        enc.save(folder)
        return {"method": method, "pooling": enc.pooling, **_summary(result, recipe, len(sentences), resumed)}

    return run_stage(store, STAGE, 0, *key, compute, after_commit=drop_checkpoints(store, STAGE))
