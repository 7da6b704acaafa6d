"""The distillation flow: Trans-Encoder over N PLMs in one cycle loop (paper §2; algorithm.md §1.4, §1.6).

Each cycle, every PLM's bi-encoder labels the pool; with several PLMs one stage averages those labels
(mutual distillation); every PLM's cross-encoder trains on them; then the same in the other
direction. With one PLM (self-distillation) there is nothing to average and every stage is keyed
exactly as it always was. The per-PLM stages go through the flow's task runner (threads on one
machine, or a Dask cluster); every stage is cached in the store, so rerunning a config resumes it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.config import DASK_ENV_VAR, DistillConfig
from flows.report import publish_report
from flows.signals import stop_stages_on_signals
from tasks.averaging import assign_devices, average_labels, visible_gpus
from tasks.distill import bi_scores, cross_scores, train_bi, train_cross
from tasks.eval_sets import eval_inputs
from tasks.evaluate import dev_score, evaluate
from tasks.ingest import ingest_pairs
from tasks.inputs import benchmark_inputs, benchmark_root, fingerprint_model
from tasks.preflight import check_starting_models, starting_refs
from tasks.retrain import publish_run
from tasks.store import Store
from tasks.unsup_init import init_bi
from trans_encoder_core.allocator import keep_heap
from trans_encoder_core.benchmarks import DATA_ENV_VAR
from trans_encoder_core.binary_tasks import resolve_binary_root
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.encoders import resolve_pooling
from trans_encoder_core.errors import ConfigError
from trans_encoder_core.selection import KINDS, select_best

Result = dict[str, Any]
Models = dict[str, dict[str, str]]


def as_model(stage: Result) -> dict[str, str]:
    """A trained-model stage result as a model input of later stages."""
    return {"ref": stage["uri"], "digest": stage["digest"]}


def pair_source(cfg: DistillConfig, data_root: str | None) -> dict[str, Any]:
    """What `ingest_pairs` reads: the user's pair file, else the benchmark pool."""
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
    if cfg.binary_task is not None:
        return {"kind": "binary", "data": binary_root(cfg), "pool": cfg.pool, **common}
    if data_root is None:
        raise ConfigError(
            "distill expects a pair file (pairs=...) or a benchmark folder for the benchmark pool, got "
            f"neither; pass --pairs FILE, or --data DIR / set {DATA_ENV_VAR}."
        )
    return {"kind": "benchmark", "data": data_root, "pool": cfg.pool, **common}


def binary_root(cfg: DistillConfig) -> str | None:
    """The binary-task folder a run reads: `binary_data`, else $TRANS_ENCODER_BINARY_DATA."""
    root = resolve_binary_root(cfg.binary_data, os.environ)
    return str(root.resolve()) if root else None


def own_sets(cfg: DistillConfig) -> dict[str, Any]:
    """The run's own dev and test sets (`tasks.eval_sets.eval_inputs`), read and checked once; none
    without a dev file, test files or a binary pool (and then nothing here is read)."""
    binary = (binary_root(cfg), cfg.binary_task) if cfg.binary_task else None
    if cfg.dev is None and not cfg.tests and binary is None:
        return {"dev": None, "tests": {}}
    return eval_inputs(cfg.dev, cfg.tests, binary)


@dataclass(frozen=True)
class PLM:
    """One PLM as its stages see it: both configs with its seed applied, and its device."""

    bi: BiEncoderConfig
    cross: CrossEncoderConfig
    device: str
    init_method: str


def plm_runs(cfg: DistillConfig, *, spread: bool) -> dict[str, PLM]:
    """Every PLM with its seed (or the run's) applied to both fits and its device assigned."""
    devices = assign_devices([p.device for p in cfg.plms], spread=spread)
    runs = {}
    for p, device in zip(cfg.plms, devices, strict=True):
        seed = cfg.seed if p.seed is None else p.seed
        bi = p.bi.model_copy(update={"fit": p.bi.fit.model_copy(update={"seed": seed})})
        cross = p.cross.model_copy(update={"fit": p.cross.fit.model_copy(update={"seed": seed})})
        runs[p.name] = PLM(bi, cross, device, p.init_method)
    return runs


@dataclass
class Run:
    """What every stage of one run shares, and the log of stage results (PLM name, or None)."""

    cfg: DistillConfig
    plms: dict[str, PLM]
    data: dict[str, Any]
    pairs: Result
    start_bi: Models = field(default_factory=dict)
    start_cross: Models = field(default_factory=dict)
    pooling: dict[str, str] = field(default_factory=dict)
    log: list[tuple[str | None, Result]] = field(default_factory=list)
    sets: dict[str, Result] = field(default_factory=dict)  # own sets evaluated next to the benchmarks

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
        todo = plms or self.plms
        takes_device = "device" in inspect.signature(stage.fn).parameters
        futures = {
            name: stage.with_options(task_run_name=self._run_name(stage.name, name, label)).submit(
                store_root=self.cfg.store,
                **({"device": plm.device} if takes_device else {}),
                **args(name, plm),
            )
            for name, plm in todo.items()
        }
        wait(list(futures.values()))
        results = {name: future.result() for name, future in futures.items()}
        self.log += list(results.items())
        return results

    def _run_name(self, stage: str, name: str, label: str) -> str:
        return f"{stage}[{name}, {label}]" if self.cfg.mutual else f"{stage}[{label}]"

    def shared(self, labels: dict[str, Result], kind: str, cycle: int) -> Result:
        """The labels every PLM learns from: the average over PLMs (a stage of its own), or with one
        PLM its own labels (averaging one table is the identity)."""
        if not self.cfg.mutual:
            return next(iter(labels.values()))
        result = average_labels(self.cfg.store, labels, kind, cycle)
        self.log.append((None, result))
        return result


def starting_models(run: Run) -> None:
    """Each PLM's starting bi-encoder (its `bi.model`, or its unsupervised init, paper §2.1) with the
    pooling every bi-encoder of the PLM uses, and its starting cross-encoder (its `cross.model`, else
    its `bi.model`: the vanilla PLM, §1.2)."""
    store = run.cfg.store
    run.start_bi = {n: fingerprint_model(store, p.bi.model) for n, p in run.plms.items()}
    run.pooling = {n: resolve_pooling(p.bi.model, p.bi.pooling) for n, p in run.plms.items()}
    run.start_cross = {n: fingerprint_model(store, p.cross.model or p.bi.model) for n, p in run.plms.items()}
    todo = {n: p for n, p in run.plms.items() if p.init_method != "none"}
    if todo:
        steps = {"unsup": run.cfg.unsup, "dev": run.dev, "checkpoint_steps": run.cfg.checkpoint_steps}
        inits = run.each(
            init_bi,
            "init",
            lambda n, p: (
                {"model": run.start_bi[n], "pairs": run.pairs, "bi": p.bi, "method": p.init_method}
                | {"seed": p.bi.fit.seed, **steps}
            ),
            todo,
        )
        run.start_bi |= {n: as_model(result) for n, result in inits.items()}
        run.pooling |= {n: result["metrics"]["pooling"] for n, result in inits.items()}


def one_cycle(run: Run, c: int, teacher: Models) -> dict[str, Any]:
    """Cycle `c` (algorithm.md §1.4 A–D, §1.6): bi labels → (average) → crosses → (average) → bis."""
    refresh, label = run.cfg.restart == "refresh", f"cycle {c}"
    fit = {"dev": run.dev, "cycle": c, "checkpoint_steps": run.cfg.checkpoint_steps}
    bi_labels = run.each(
        bi_scores, label, lambda n, p: {"model": teacher[n], "pairs": run.pairs, "bi": p.bi, "cycle": c}
    )
    shared_bi = run.shared(bi_labels, "bi", c)
    cross = run.each(
        train_cross,
        label,
        lambda n, p: {
            "labels": shared_bi,
            "start": run.start_cross[n] if refresh else teacher[n],
            "cross": p.cross,
            **fit,
        },
    )
    cross_labels = run.each(
        cross_scores,
        label,
        lambda n, p: {"model": as_model(cross[n]), "pairs": run.pairs, "cross": p.cross, "cycle": c},
    )
    shared_cross = run.shared(cross_labels, "cross", c)
    bi = run.each(
        train_bi,
        label,
        lambda n, p: {
            "labels": shared_cross,
            "start": run.start_bi[n] if refresh else as_model(cross[n]),
            "bi": p.bi.model_copy(update={"pooling": run.pooling[n]}),
            "mix_labels": shared_bi,
            "mix_weight": run.cfg.bi_label_mix,
            "calibrate": run.cfg.bi_label_calibration == "quantile",
            **fit,
        },
    )
    models = {
        n: {"bi": bi[n], "cross": cross[n], "bi_labels": bi_labels[n], "cross_labels": cross_labels[n]}
        for n in run.plms
    }
    averages = {"bi": shared_bi, "cross": shared_cross} if run.cfg.mutual else None
    return {"cycle": c, "models": models, "average": averages}


def evaluate_group(run: Run, models: Models, kind: str, cycle: int, label: str) -> Result:
    """One evaluation stage of `models` together (one model, or the mean of several: an ensemble)."""
    names = sorted(models)
    result = evaluate.with_options(task_run_name=f"evaluate[{label}]").submit(
        store_root=run.cfg.store,
        models=models,
        kind=kind,
        data=run.data["data"],
        tasks=run.cfg.eval_tasks,
        bis={n: run.plms[n].bi for n in names},
        crosses={n: run.plms[n].cross for n in names},
        devices={n: run.plms[n].device for n in names},
        cycle=cycle,
        sets=run.sets or None,
    )
    return result.result()


def evaluate_each(run: Run, models: Models, kind: str, cycles: dict[str, int]) -> dict[str, Result]:
    """Scores × 100 of one model per PLM (`kind` "bi" or "cross", from the given cycles) on the
    benchmarks and the run's own sets."""
    cfg, data, sets = run.cfg, run.data["data"], run.sets or None
    return run.each(
        evaluate,
        f"{kind} eval",
        lambda n, p: (
            {"models": {n: models[n]}, "kind": kind, "data": data, "tasks": cfg.eval_tasks, "sets": sets}
            | {"bis": {n: p.bi}, "crosses": {n: p.cross}, "devices": {n: p.device}, "cycle": cycles[n]}
        ),
    )


def best_models(
    run: Run, cycles: list[dict[str, Any]], starts: dict[str, Result]
) -> tuple[dict[str, dict[str, int]], dict[str, Models]]:
    """Each PLM's best cycle per formulation on dev, chosen per model (algorithm.md §1.6)."""
    best: dict[str, dict[str, int]] = {}
    chosen: dict[str, Models] = {"bi": {}, "cross": {}}
    for n in run.plms:
        history = [c["models"][n] for c in cycles]
        dev_scores = {k: [h[k]["metrics"].get("dev") for h in history] for k in KINDS}
        start_dev = dev_score(starts[n]["metrics"]["tasks"])
        best[n] = select_best(
            dev_scores, start_dev, dev_selection=run.cfg.dev_selection, select_start=run.cfg.select_start
        )
        for kind in KINDS:
            cycle = best[n][kind]
            chosen[kind][n] = run.start_bi[n] if cycle == 0 else as_model(history[cycle - 1][kind])
    return best, chosen


def final_evaluations(
    run: Run, best: dict[str, dict[str, int]], chosen: dict[str, Models], starts: dict[str, Result]
) -> dict[str, Any]:
    """Every PLM's selected models on the benchmarks; with several PLMs also Table 1's ensembles."""
    finals: dict[str, Any] = {"start": starts}
    for kind in KINDS:
        todo = {n: m for n, m in chosen[kind].items() if not (kind == "bi" and best[n]["bi"] == 0)}
        done = evaluate_each(run, todo, kind, {n: best[n][kind] for n in todo}) if todo else {}
        finals[kind] = {n: done[n] if n in done else starts[n] for n in run.plms}
    finals["ensembles"] = {}
    if run.cfg.mutual:
        groups = {"start_bi": ("bi", run.start_bi, 0), "bi": ("bi", chosen["bi"], run.cfg.cycles)}
        groups["cross"] = ("cross", chosen["cross"], run.cfg.cycles)
        for group, (kind, models, cycle) in groups.items():
            finals["ensembles"][group] = evaluate_group(run, models, kind, cycle, f"ensemble {group}")
            run.log.append((None, finals["ensembles"][group]))
    return finals


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
    """The runner of runs started without `run_distill` (e.g. a deployment): Dask when the process
    has $TRANS_ENCODER_DASK_ADDRESS, else threads (one per PLM of the paper's pair on GPUs)."""
    address = os.environ.get(DASK_ENV_VAR)
    return dask_runner(address) if address else thread_runner(2)


def _check_runner(cfg: DistillConfig) -> None:
    ctx = FlowRunContext.get()
    if cfg.dask_address and ctx is not None and type(ctx.task_runner).__name__ != "DaskTaskRunner":
        get_run_logger().warning(
            "dask_address=%s is applied by run_distill and the CLI, not by this run's task runner (%s); "
            "in a deployment, set %s in the worker's environment.",
            cfg.dask_address,
            type(ctx.task_runner).__name__,
            DASK_ENV_VAR,
        )


@flow(name="distill", log_prints=True, task_runner=default_task_runner())
def distill(config: DistillConfig = DistillConfig()) -> dict[str, Any]:  # noqa: B008
    """Trans-Encoder distillation over one or more PLMs with cached stages; rerun a config to resume."""
    stop_stages_on_signals()  # SIGTERM / Ctrl-C end the running stage at its next step
    keep_heap()  # before the task threads start (the CLI has already done it; deployments have not)
    cfg = config.model_copy(update={"store": Store(config.store).root})
    _check_runner(cfg)
    check_starting_models(cfg.store, starting_refs(cfg.plms))  # before any stage (a bad model: seconds)
    own = own_sets(cfg)
    data = benchmark_inputs(benchmark_root(cfg.data), cfg.eval_tasks, stsb_dev=own["dev"] is None)
    data = data | ({"dev": own["dev"]} if own["dev"] else {})
    pairs = ingest_pairs(cfg.store, pair_source(cfg, data["data"] and data["data"]["data"]))
    run = Run(cfg, plm_runs(cfg, spread=_threaded()), data, pairs, log=[(None, pairs)])
    run.sets = ({"dev": own["dev"]} if own["dev"] else {}) | own["tests"]
    starting_models(run)
    starts = evaluate_each(run, run.start_bi, "bi", dict.fromkeys(run.plms, 0))
    cycles, teacher = [], dict(run.start_bi)
    for c in range(1, cfg.cycles + 1):
        cycles.append(one_cycle(run, c, teacher))
        teacher = {n: as_model(cycles[-1]["models"][n]["bi"]) for n in run.plms}
    best, chosen = best_models(run, cycles, starts)
    evaluations = final_evaluations(run, best, chosen, starts)
    refs = {"start": run.start_bi, **chosen}
    outcome = {"log": run.log, "cycles": cycles, "evaluations": evaluations, "best": best, "refs": refs}
    summary = publish_report(cfg, outcome | {"data": data, "own_sets": own})
    if cfg.publish:  # a registry version, gated like a retrain's (tasks/retrain.py)
        gate = {"tolerance": cfg.publish_tolerance, "gate_on": cfg.publish_gate_on}
        summary["published"] = publish_run(cfg.store, summary, pairs, **gate)
    return summary


def task_runner_for(cfg: DistillConfig) -> TaskRunner:
    """The runner a run asks for: Dask at `dask_address` (or $TRANS_ENCODER_DASK_ADDRESS), else
    `thread_runner`."""
    address = cfg.dask_address or os.environ.get(DASK_ENV_VAR) or None
    if address:
        if cfg.store.startswith("memory://"):
            raise ConfigError(
                f"A Dask run expects a store its workers can reach, got {cfg.store!r} (in this process "
                "only); use a folder they share or an s3:// store."
            )
        return dask_runner(address)
    return thread_runner(len(cfg.plms), cfg.max_concurrency)


def run_distill(config: DistillConfig, task_runner: TaskRunner | None = None) -> dict[str, Any]:
    """Run `distill` on `task_runner`, or on the runner the config asks for (`task_runner_for`)."""
    return distill.with_options(task_runner=task_runner or task_runner_for(config))(config)
