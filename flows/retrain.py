"""Scheduled retraining: new unlabeled pairs from the inbox → merged pool → self-distillation that
continues from the latest published model → a new registry version when it passes the dev gate.

Run it on a schedule or on the `trans-encoder.pairs.added` event (prefect.yaml); run it twice and the
second run finds nothing new and stops. Every stage is the self-distillation's cached stage, so a
failed retrain resumes where it failed, and the inbox files it used stay pending until it publishes.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.config import DistillConfig, PLMConfig
from flows.distill import distill as distill_flow
from tasks.retrain import merge_pool, publish_candidate, retrain_state


class RetrainConfig(BaseModel):
    """Retraining on new inbox pairs (the self-distillation of algorithm.md §1.4, continued).

    Attributes:
        distill: the self-distillation settings. `distill.store` is the store whose inbox, pool and
            registry are used; `distill.run_name` prefixes each run's report folder
            (`{run_name}-v{version:06d}`); `distill.pairs` must stay unset (the retrain builds the pool).
            After the first version, each PLM's `bi.model` is replaced by its bi-encoder in the latest
            version (one PLM or several: a mutual run is retrained and published the same way).
        initial_pairs: the pair file of the first pool, used only while the registry is empty (the
            inbox files are added to it); None starts from the inbox alone.
        tolerance: publish only if the new dev Spearman x100 is at least the current one minus this.
        gate_on: the model whose dev score decides ("bi" or "cross").
        continue_cross: also start the cross-encoder from the latest version's cross-encoder (default:
            `distill.cross.model`, as in the paper).
        force: retrain even when the inbox holds no new file (e.g. after changing `distill`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    distill: DistillConfig = Field(default_factory=lambda: DistillConfig(run_name="retrain"))
    initial_pairs: str | None = None
    tolerance: float = Field(default=1.0, ge=0.0)
    gate_on: Literal["bi", "cross"] = "bi"
    continue_cross: bool = False
    force: bool = False

    @model_validator(mode="after")
    def _check_pairs(self) -> RetrainConfig:
        if self.distill.pairs is not None:
            raise ValueError(
                f"retrain expects distill.pairs unset (it trains on the merged pool), got "
                f"{self.distill.pairs!r}; pass that file as initial_pairs or add it with "
                "`trans-encoder add-pairs`."
            )
        return self


def with_store(config: RetrainConfig, store: str | None) -> RetrainConfig:
    """`config` with `distill.store` replaced by `store` (the event trigger passes the inbox's store)."""
    if not store:
        return config
    return config.model_copy(update={"distill": config.distill.model_copy(update={"store": store})})


def run_config(
    config: RetrainConfig, pool: dict[str, Any], latest: dict[str, Any] | None, version: int
) -> DistillConfig:
    """The self-distillation config of one retrain: the merged pool, the previous models as starts."""
    distill = config.distill
    updates: dict[str, Any] = {
        "pairs": pool["pairs_uri"],
        "pairs_format": "parquet",
        "sentence1_column": "sentence1",
        "sentence2_column": "sentence2",
        "run_name": f"{distill.run_name}-v{version:06d}",
        "publish": False,  # the retrain publishes, after its own gate
    }
    if latest is not None:
        updates["plms"] = [
            continued_plm(plm, latest, config.continue_cross, len(distill.plms)) for plm in distill.plms
        ]
    return distill.model_copy(update=updates)


def continued_plm(plm: PLMConfig, latest: dict[str, Any], continue_cross: bool, n_plms: int) -> PLMConfig:
    """`plm` starting from its models in the latest version (a version of one PLM, or from before
    versions recorded models per PLM, names its bi/cross under "models")."""
    models = (latest.get("plms") or {}).get(plm.name) or (latest["models"] if n_plms == 1 else None)
    if models is None:
        return plm
    update: dict[str, Any] = {"bi": plm.bi.model_copy(update={"model": models["bi"]})}
    if continue_cross:
        update["cross"] = plm.cross.model_copy(update={"model": models["cross"]})
    return plm.model_copy(update=update)


def read_options(distill: DistillConfig) -> dict[str, Any]:
    """How new pair files are read (the columns and invalid-row policy of `distill`)."""
    return {
        "sentence1_column": distill.sentence1_column,
        "sentence2_column": distill.sentence2_column,
        "on_invalid": "drop" if distill.drop_invalid_rows else "error",
    }


def _run_info(summary: dict[str, Any]) -> dict[str, Any]:
    from prefect.runtime import flow_run

    return {
        "name": summary["run_name"],
        "summary": summary.get("summary_uri"),
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
    }


def retrain_report(result: dict[str, Any]) -> str:
    """The retrain's markdown artifact: what was ingested and what the registry decided."""
    lines = [f"# Retrain of `{result['store']}`", "", f"**{result['status']}**: {result['reason']}"]
    if result.get("pool"):
        pool = result["pool"]
        lines += ["", f"Pool: {pool['n_pairs']} pairs ({pool['n_new']} new) at `{pool['uri']}`."]
    if result.get("files"):
        lines += ["", "Inbox files: " + ", ".join(f"`{name}`" for name in result["files"]) + "."]
    if result.get("version") is not None:
        parent = result.get("parent")
        lines += ["", f"Registry version {result['version']} (parent {parent}) is now `latest`."]
    return "\n".join(lines) + "\n"


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    create_markdown_artifact(retrain_report(result), key="te-retrain", description="last retrain decision")
    print(f"retrain: {result['status']}: {result['reason']}")
    return result


@flow(name="retrain", log_prints=True)
def retrain(config: RetrainConfig = RetrainConfig(), store: str | None = None) -> dict[str, Any]:  # noqa: B008
    """Ingest new inbox files, continue distillation from the latest version, publish if better.

    Args:
        config: the retrain settings (see `RetrainConfig`).
        store: overrides `config.distill.store` (the `trans-encoder.pairs.added` trigger passes the
            store named in the event).
    """
    cfg = with_store(config, store)
    root = cfg.distill.store
    state = retrain_state(root)
    latest, pending = state["latest"], state["pending"]
    result: dict[str, Any] = {"store": root, "files": [f["name"] for f in pending], "version": None}
    if not pending and latest is not None and not cfg.force:
        reason = "no new inbox file since the latest version"
        return _finish({**result, "status": "skipped", "reason": reason})
    base = latest["pool"] if latest else None
    initial = cfg.initial_pairs if latest is None else None
    pool = merge_pool(root, base, initial, pending, read_options(cfg.distill))
    summary = distill_flow(run_config(cfg, pool, latest, state["next_version"]))
    outcome = publish_candidate(
        root, summary, pool, latest, tolerance=cfg.tolerance, gate_on=cfg.gate_on, run=_run_info(summary)
    )
    decision = outcome["decision"]
    result |= {
        "status": "published" if outcome["version"] is not None else "rejected",
        "reason": decision["reason"],
        "version": outcome["version"],
        "parent": latest["version"] if latest else None,
        "pool": {"uri": pool["uri"], **{k: pool["metrics"][k] for k in ("n_pairs", "n_new")}},
        "decision": decision,
        "summary_uri": summary.get("summary_uri"),
    }
    return _finish(result)
