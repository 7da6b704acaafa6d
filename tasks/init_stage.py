"""Stage `init_bi`: a raw pretrained LM → the first bi-encoder, without labels (paper §2.1;
algorithm.md §1.2), by SimCSE or Mirror-BERT on the sentences of the pair pool.

Cached like every stage (tasks/stages.py): keyed by the recipe, the pooling and the digests of the
starting model, the pair pool and the dev set; checkpointed into the store while it trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.artifacts import PAIRS_FILE, load_bi, load_checkpoint, read_table, save_checkpoint
from tasks.stages import injected_fault, kill_self, pipeline_task, run_stage
from tasks.store import Store
from trans_encoder_core.benchmarks import load_stsb
from trans_encoder_core.config import BiEncoderConfig, ContrastiveConfig, InitConfig
from trans_encoder_core.evaluation import bi_scorer, dev_evaluator
from trans_encoder_core.init import distinct_sentences, train_contrastive
from trans_encoder_core.runtime import resolve_device
from trans_encoder_core.training import TrainResult

STAGE = "init_bi"


def _checkpoint_kwargs(store: Store, key: str) -> dict[str, Any]:
    """`fit` keyword arguments that checkpoint into the store and resume from there."""
    uri = store.uri("checkpoints", STAGE, key, "state.safetensors")
    fault = injected_fault(STAGE, 0)

    def checkpoint(state: Any) -> None:
        save_checkpoint(store, uri, state)
        if fault == "kill":
            kill_self()

    return {"checkpoint": checkpoint, "resume": load_checkpoint(store, uri)}


def _summary(
    result: TrainResult, recipe: ContrastiveConfig, n_sentences: int, resumed: int | None
) -> dict[str, Any]:
    return {
        "n_sentences": n_sentences,
        "loss": recipe.loss,
        "temperature": recipe.temperature,
        "dev": result.best_score,
        "best_step": result.best_step,
        "steps": result.steps,
        "resumed_from_step": resumed,
        "train_seconds": round(result.seconds, 2),
        "precision": result.precision,
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": result.losses[-1] if result.losses else None,
        "history": [[p.global_step, round(p.score, 4)] for p in result.history],
    }


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
    config = {
        "method": method,
        "recipe": recipe.model_dump(),
        "max_sentences": unsup.max_sentences,
        "pooling": bi.pooling,
        "max_seq_length": bi.max_seq_length,
    }
    inputs = {"model": model["digest"], "pairs": pairs["digest"], "dev": dev["digest"] if dev else "none"}

    def compute(folder: Path, key: str) -> dict[str, Any]:
        table = read_table(store, pairs["uri"], PAIRS_FILE)
        sentences = distinct_sentences(
            table["sentence1"].to_pylist(),
            table["sentence2"].to_pylist(),
            limit=unsup.max_sentences,
            seed=seed,
        )
        enc = load_bi(
            store,
            model["ref"],
            pooling=bi.pooling,
            max_seq_length=recipe.max_seq_length,
            device=resolve_device(device),
        )
        evaluate = None
        if dev:
            dev_set = load_stsb(dev["data"], "dev")
            evaluate = dev_evaluator(bi_scorer(enc, batch_size=bi.score_batch_size), dev_set)
        ckpt = _checkpoint_kwargs(store, key)
        resumed = ckpt["resume"].global_step if ckpt["resume"] is not None else None
        result = train_contrastive(
            enc, sentences, recipe, evaluate=evaluate, checkpoint_steps=checkpoint_steps, **ckpt
        )
        enc.max_seq_length = bi.max_seq_length
        enc.save(folder)
        return {"method": method, "pooling": enc.pooling, **_summary(result, recipe, len(sentences), resumed)}

    return run_stage(
        store,
        STAGE,
        0,
        config,
        inputs,
        compute,
        after_commit=lambda key: store.delete(store.uri("checkpoints", STAGE, key)),
    )
