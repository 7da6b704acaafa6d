"""The mutual-distillation flow (paper §2, mutual distillation; algorithm.md §1.6): N PLMs, one cycle loop.

Each cycle, every PLM's bi-encoder labels the pool, one stage averages those labels, and every PLM's
cross-encoder trains on the average; then the same in the other direction. Only the averaged labels
are shared between PLMs. The per-PLM stages are the self-distillation ones, submitted through the
flow's task runner (threads on one machine, or a Dask cluster), so the PLMs train concurrently; every
stage is cached in the store, so rerunning the same config resumes where a run failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.mutual_config import DASK_ENV_VAR, MutualDistillConfig
from flows.mutual_report import publish_mutual_report
from flows.report import select_best
from flows.self_distill import as_model, pair_source
from tasks.distill import bi_scores, cross_scores, evaluate, train_bi, train_cross
from tasks.ingest import ingest_pairs
from tasks.init_stage import init_bi
from tasks.mutual import assign_devices, average_labels, evaluate_ensemble, visible_gpus
from tasks.resolve import resolve_data, resolve_model
from tasks.store import Store
from trans_encoder_core.benchmarks import DATA_ENV_VAR
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.errors import ConfigError

Result = dict[str, Any]
Models = dict[str, dict[str, str]]


@dataclass(frozen=True)
class PLM:
    """One PLM as its stages see it: both configs with its own seed applied, and its device."""

    bi: BiEncoderConfig
    cross: CrossEncoderConfig
    device: str
    init_method: str
    seed: int


@dataclass
class MutualRun:
    """What every stage of one run shares, and the log of stage results (model name or None)."""

    cfg: MutualDistillConfig
    plms: dict[str, PLM]
    data: dict[str, Any]
    pairs: Result
    start_bi: Models = field(default_factory=dict)
    start_cross: Models = field(default_factory=dict)
    log: list[tuple[str | None, Result]] = field(default_factory=list)

    @property
    def dev(self) -> dict[str, str] | None:
        return self.data["dev"] if self.cfg.dev_selection else None

    def each(
        self,
        stage: Any,
        label: str,
        args: Callable[[str, PLM], dict[str, Any]],
        plms: dict[str, PLM] | None = None,
    ) -> dict[str, Result]:
        """Submit `stage` once per PLM (store and device added) through the flow's task runner.

        Every submission finishes before the first failure is raised, so a sibling's finished work
        is committed and comes back cached when the flow is rerun.
        """
        futures = {
            name: stage.with_options(task_run_name=f"{stage.name}[{name}, {label}]").submit(
                store_root=self.cfg.store, device=plm.device, **args(name, plm)
            )
            for name, plm in (plms or self.plms).items()
        }
        wait(list(futures.values()))
        results = {name: future.result() for name, future in futures.items()}
        self.log += list(results.items())
        return results

    def average(self, labels: dict[str, Result], kind: str, cycle: int) -> Result:
        """The averaging stage (runs in the flow's process: it only joins Parquet tables)."""
        result = average_labels(self.cfg.store, labels, kind, cycle)
        self.log.append((None, result))
        return result


def plm_runs(cfg: MutualDistillConfig, *, spread: bool) -> dict[str, PLM]:
    """Every PLM with its own seed applied to both fits and its device assigned."""
    devices = assign_devices([p.device for p in cfg.plms], spread=spread)
    runs = {}
    for p, device in zip(cfg.plms, devices, strict=True):
        bi = p.bi.model_copy(update={"fit": p.bi.fit.model_copy(update={"seed": p.seed})})
        cross = p.cross.model_copy(update={"fit": p.cross.fit.model_copy(update={"seed": p.seed})})
        runs[p.name] = PLM(bi, cross, device, p.init_method, p.seed)
    return runs


def starting_models(run: MutualRun) -> None:
    """Each PLM's starting bi-encoder (its `bi.model`, or its unsupervised init, paper §2.1) and
    starting cross-encoder (its `cross.model`, else its `bi.model`: the vanilla PLM, §1.2)."""
    cfg = run.cfg
    run.start_bi = {n: resolve_model(cfg.store, p.bi.model) for n, p in run.plms.items()}
    run.start_cross = {n: resolve_model(cfg.store, p.cross.model or p.bi.model) for n, p in run.plms.items()}
    todo = {n: p for n, p in run.plms.items() if p.init_method != "none"}
    if todo:
        steps = {"unsup": cfg.unsup, "dev": run.dev, "checkpoint_steps": cfg.checkpoint_steps}
        inits = run.each(
            init_bi,
            "init",
            lambda n, p: (
                {"model": run.start_bi[n], "pairs": run.pairs, "bi": p.bi, "method": p.init_method}
                | {"seed": p.seed, **steps}
            ),
            todo,
        )
        run.start_bi |= {n: as_model(result) for n, result in inits.items()}


def one_cycle(run: MutualRun, c: int, teacher: Models) -> dict[str, Any]:
    """Cycle `c` (algorithm.md §1.4 A–D, §1.6): bi labels → average → crosses → average → bis."""
    refresh, label, dev = run.cfg.init == "refresh", f"cycle {c}", run.dev
    fit = {"dev": dev, "cycle": c, "checkpoint_steps": run.cfg.checkpoint_steps}
    bi_labels = run.each(
        bi_scores, label, lambda n, p: {"model": teacher[n], "pairs": run.pairs, "bi": p.bi, "cycle": c}
    )
    avg_bi = run.average(bi_labels, "bi", c)
    cross = run.each(
        train_cross,
        label,
        lambda n, p: {
            "labels": avg_bi,
            "start": run.start_cross[n] if refresh else teacher[n],
            "cross": p.cross,
            **fit,
        },
    )
    cross_labels = run.each(
        cross_scores,
        label,
        lambda n, p: {
            "model": as_model(cross[n]),
            "pairs": run.pairs,
            "cross": p.cross,
            "cycle": c,
        },
    )
    avg_cross = run.average(cross_labels, "cross", c)
    bi = run.each(
        train_bi,
        label,
        lambda n, p: {
            "labels": avg_cross,
            "start": run.start_bi[n] if refresh else as_model(cross[n]),
            "bi": p.bi.model_copy(update={"pooling": bi_labels[n]["metrics"]["pooling"]}),
            "mix_labels": avg_bi,
            "mix_weight": run.cfg.bi_label_mix,
            "calibrate": run.cfg.bi_label_calibration == "quantile",
            **fit,
        },
    )
    models = {
        n: {
            "cycle": c,
            "bi": bi[n],
            "cross": cross[n],
            "bi_labels": bi_labels[n],
            "cross_labels": cross_labels[n],
        }
        for n in run.plms
    }
    return {"cycle": c, "models": models, "average": {"bi": avg_bi, "cross": avg_cross}}


def evaluate_each(run: MutualRun, models: Models, kind: str, cycles: dict[str, int]) -> dict[str, Result]:
    """Spearman × 100 of one model per PLM (`kind` "bi" or "cross", from the given cycles)."""
    cfg, data = run.cfg, run.data["data"]
    return run.each(
        evaluate,
        f"{kind} eval",
        lambda n, p: (
            {"model": models[n], "kind": kind, "data": data, "tasks": cfg.eval_tasks}
            | {"bi": p.bi, "cross": p.cross, "cycle": cycles[n]}
        ),
    )


def best_models(
    run: MutualRun, cycles: list[dict[str, Any]], starts: dict[str, Result]
) -> tuple[dict[str, dict[str, int]], dict[str, Models]]:
    """Each PLM's best cycle per formulation on dev, chosen per model (algorithm.md §1.6)."""
    best: dict[str, dict[str, int]] = {}
    chosen: dict[str, Models] = {"bi": {}, "cross": {}}
    for n in run.plms:
        history = [c["models"][n] for c in cycles]
        best[n] = select_best(
            history, starts[n], dev_selection=run.cfg.dev_selection, select_start=run.cfg.select_start
        )
        for kind in ("bi", "cross"):
            cycle = best[n][kind]
            chosen[kind][n] = run.start_bi[n] if cycle == 0 else as_model(history[cycle - 1][kind])
    return best, chosen


def ensembles(run: MutualRun, groups: dict[str, tuple[str, Models, int]]) -> dict[str, Result]:
    """Table 1's ensemble rows: Spearman of the mean of the PLMs' scores, for each group of models."""
    shared = {
        "store_root": run.cfg.store,
        "data": run.data["data"],
        "tasks": run.cfg.eval_tasks,
        "bis": {n: p.bi for n, p in run.plms.items()},
        "crosses": {n: p.cross for n, p in run.plms.items()},
        "devices": {n: p.device for n, p in run.plms.items()},
    }
    futures = {
        group: evaluate_ensemble.with_options(task_run_name=f"evaluate_ensemble[{group}]").submit(
            models=models, kind=kind, cycle=cycle, **shared
        )
        for group, (kind, models, cycle) in groups.items()
    }
    wait(list(futures.values()))
    results = {group: future.result() for group, future in futures.items()}
    run.log += [(None, result) for result in results.values()]
    return results


def _threaded() -> bool:
    ctx = FlowRunContext.get()
    return ctx is None or isinstance(ctx.task_runner, ThreadPoolTaskRunner)


def thread_runner(n_plms: int, max_concurrency: int | None = None) -> ThreadPoolTaskRunner:
    """Threads on this machine: one per PLM when a GPU is visible, one on a CPU-only machine
    (concurrent CPU fits only compete for the same cores)."""
    return ThreadPoolTaskRunner(max_workers=max_concurrency or (n_plms if visible_gpus() else 1))


def dask_runner(address: str) -> TaskRunner:
    """A prefect-dask runner on a running Dask scheduler ("tcp://host:8786")."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise ConfigError(
            "Running on a Dask cluster expects prefect-dask and distributed, which are not installed; "
            "run `pip install 'trans-encoder[dask]'`."
        ) from exc
    return DaskTaskRunner(address=address)


def default_task_runner() -> TaskRunner:
    """The runner of runs started without `run_mutual` (e.g. a deployment): Dask when the process
    has $TRANS_ENCODER_DASK_ADDRESS, else threads for the paper's two PLMs."""
    address = os.environ.get(DASK_ENV_VAR)
    return dask_runner(address) if address else thread_runner(2)


def _check_runner(cfg: MutualDistillConfig) -> None:
    ctx = FlowRunContext.get()
    if cfg.dask_address and ctx is not None and type(ctx.task_runner).__name__ != "DaskTaskRunner":
        get_run_logger().warning(
            "dask_address=%s is applied by run_mutual and the CLI, not by this run's task runner (%s); "
            "in a deployment, set %s in the worker's environment.",
            cfg.dask_address,
            type(ctx.task_runner).__name__,
            DASK_ENV_VAR,
        )


@flow(name="mutual-distill", log_prints=True, task_runner=default_task_runner())
def mutual_distill(config: MutualDistillConfig = MutualDistillConfig()) -> dict[str, Any]:  # noqa: B008
    """Trans-Encoder mutual distillation over N PLMs with cached stages; rerun the same config to resume."""
    cfg = config.model_copy(update={"store": Store(config.store).root})
    _check_runner(cfg)
    data = resolve_data(cfg.data or os.environ.get(DATA_ENV_VAR) or None, cfg.eval_tasks)
    pairs = ingest_pairs(cfg.store, pair_source(cfg, data["data"] and data["data"]["data"]))
    run = MutualRun(cfg, plm_runs(cfg, spread=_threaded()), data, pairs, log=[(None, pairs)])
    starting_models(run)
    starts = evaluate_each(run, run.start_bi, "bi", dict.fromkeys(run.plms, 0))
    cycles, teacher = [], dict(run.start_bi)
    for c in range(1, cfg.cycles + 1):
        cycles.append(one_cycle(run, c, teacher))
        teacher = {n: as_model(cycles[-1]["models"][n]["bi"]) for n in run.plms}
    best, chosen = best_models(run, cycles, starts)
    finals = {
        kind: evaluate_each(run, chosen[kind], kind, {n: best[n][kind] for n in run.plms})
        for kind in ("bi", "cross")
    }
    groups = {
        "start_bi": ("bi", run.start_bi, 0),
        "bi": ("bi", chosen["bi"], cfg.cycles),
        "cross": ("cross", chosen["cross"], cfg.cycles),
    }
    evaluations = {"start": starts, **finals, "ensembles": ensembles(run, groups)}
    refs = {"start": run.start_bi, **chosen}
    return publish_mutual_report(cfg, run.log, cycles, evaluations, best, refs, data)


def task_runner_for(cfg: MutualDistillConfig) -> TaskRunner:
    """The runner a mutual run asks for: Dask at `dask_address` (or $TRANS_ENCODER_DASK_ADDRESS),
    else `thread_runner`."""
    address = cfg.dask_address or os.environ.get(DASK_ENV_VAR) or None
    if address:
        if cfg.store.startswith("memory://"):
            raise ConfigError(
                f"A Dask run expects a store its workers can reach, got {cfg.store!r} (in this process "
                "only); use a folder they share or an s3:// store."
            )
        return dask_runner(address)
    return thread_runner(len(cfg.plms), cfg.max_concurrency)


def run_mutual(config: MutualDistillConfig, task_runner: TaskRunner | None = None) -> dict[str, Any]:
    """Run `mutual_distill` on `task_runner`, or on the runner the config asks for (`task_runner_for`)."""
    runner = task_runner or task_runner_for(config)
    return mutual_distill.with_options(task_runner=runner)(config)
