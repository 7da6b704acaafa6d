"""`trans-encoder distill` (and its aliases `self-distill`, `mutual-distill`): the command line of the
one distillation flow. It turns options into a `DistillConfig`: preset, then options, then `--set`.

The PLMs come from repeated `--model` options (none: the preset's PLMs), or from each model run with
several `--seeds` or `--poolings` (every combination is one PLM). `self-distill` takes one model,
`mutual-distill` at least two PLMs; both keep the options they always had.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flows.cli_common import UsageError, apply_sets, config_error
from flows.config import PRESETS, DistillConfig, PLMConfig, preset_config, short_name

SHARED_OPTIONS = ("store", "pairs", "data", "run_name", "cycles", "max_pairs", "max_concurrency", "publish")
SELF_PRESETS = ("paper", "quick")


def _split(text: str | None, kind: type) -> list[Any]:
    if not text:
        return []
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"expected a comma-separated list of {kind.__name__}, got {text!r}.") from None


def _names(models: list[str], seeds: list[Any], poolings: list[Any]) -> list[str]:
    names = []
    for model in models:
        for seed in seeds:
            for pooling in poolings:
                parts = [short_name(model)]
                parts += [f"s{seed}"] if len(seeds) > 1 else []
                parts += [str(pooling)] if len(poolings) > 1 else []
                names.append("-".join(parts))
    if len(set(names)) < len(names):  # the same model name twice: number them
        names = [f"{n}-{i + 1}" for i, n in enumerate(names)]
    return names


def plm_entries(args: argparse.Namespace, preset: list[PLMConfig]) -> list[dict[str, Any]]:
    """One PLM entry per (model, seed, pooling): model i takes the settings of the preset's PLM i (or
    its last), so `--model` only replaces the starting checkpoints."""
    explicit = bool(args.model)
    models = args.model or [p.bi.model for p in preset]
    crosses = args.cross_model or []
    if crosses and len(crosses) not in (1, len(models)):
        raise UsageError(
            f"--cross-model expects one value or one per --model ({len(models)}), got {len(crosses)}."
        )
    seeds, poolings = _split(args.seeds, int) or [args.seed], _split(args.poolings, str) or [None]
    expanded = explicit or len(seeds) > 1 or len(poolings) > 1
    names = iter(_names(models, seeds, poolings) if expanded else [p.name for p in preset])
    entries = []
    for i, model in enumerate(models):
        template = preset[min(i, len(preset) - 1)].model_dump()
        cross = crosses[min(i, len(crosses) - 1)] if crosses else template["cross"]["model"]
        for seed in seeds:
            for pooling in poolings:
                entry = {**template, "name": next(names), "cross": {**template["cross"], "model": cross}}
                entry["bi"] = {**template["bi"], "model": model, **({"pooling": pooling} if pooling else {})}
                entry |= {k: v for k, v in (("init_method", args.init), ("device", args.device)) if v}
                entries.append(entry | ({"seed": seed} if seed is not None else {}))
    return entries


def eval_file_options(args: argparse.Namespace) -> dict[str, Any]:
    """`--dev FILE`, `--test NAME=FILE` (repeatable) and `--label-column` as the `dev` and `tests`
    fields (each file's other reading options stay settable with `--set dev.metric=spearman`, ...)."""
    label = {"label_column": args.label_column} if getattr(args, "label_column", None) else {}
    out: dict[str, Any] = {}
    if getattr(args, "dev", None):
        out["dev"] = {"uri": args.dev, **label}
    tests = {}
    for item in getattr(args, "test", None) or []:
        name, sep, uri = item.partition("=")
        if not sep or not name or not uri:
            raise UsageError(f"--test expects NAME=FILE (e.g. --test support=support.csv), got {item!r}.")
        if name in tests:
            raise UsageError(f"--test expects each name once, got {name!r} twice; rename one.")
        tests[name] = {"uri": uri, **label}
    if tests:
        out["tests"] = tests
    return out


def apply_plm_sets(entries: list[dict[str, Any]], sets: list[str]) -> None:
    """`--set plms.KEY=V` changes every PLM, `--set plms.NAME.KEY=V` only the PLM called NAME."""
    names = {e["name"]: e for e in entries}
    for item in sets:
        path, _, value = item.partition("=")
        parts = path.split(".")[1:]
        targets = [names[parts[0]]] if parts and parts[0] in names else entries
        rest = parts[1:] if parts and parts[0] in names else parts
        if not rest:
            raise UsageError(f"--set {path}: name a PLM setting, e.g. plms.bi.fit.epochs=2.")
        for entry in targets:
            apply_sets(entry, [f"{'.'.join(rest)}={value}"])


def legacy_sets(sets: list[str], *, single: bool) -> list[str]:
    """The `--set` paths of the commands before they became one: `init=` is now `restart=`, and
    `self-distill`'s `bi.X=V` / `cross.X=V` / `init_method=V` / `device=V` address its one PLM."""
    plm_fields = ("bi.", "cross.", "bi=", "cross=", "init_method=", "device=")
    out = [f"restart={s[5:]}" if s.startswith("init=") else s for s in sets]
    return [f"plms.{s}" if single and s.startswith(plm_fields) else s for s in out]


def build_config(
    args: argparse.Namespace, *, min_plms: int = 1, max_plms: int | None = None
) -> DistillConfig:
    """The run's config: the preset, then the options, then `--set` (the last wins)."""
    from pydantic import ValidationError

    try:
        preset = preset_config(args.preset)
        base = preset.model_dump(exclude={"plms"})
        options = {k: getattr(args, k) for k in SHARED_OPTIONS if getattr(args, k, None) is not None}
        if getattr(args, "seed", None) is not None:
            options["seed"] = args.seed
        merged = {**base, **options, "plms": plm_entries(args, preset.plms), **eval_file_options(args)}
        if getattr(args, "dask", None):
            merged["dask_address"] = args.dask
        sets = legacy_sets(args.set or [], single=max_plms == 1)
        apply_plm_sets(merged["plms"], [s for s in sets if s.startswith("plms.")])
        apply_sets(merged, [s for s in sets if not s.startswith("plms.")])
        n = len(merged["plms"])
        if n < min_plms or (max_plms is not None and n > max_plms):
            raise UsageError(_count_message(args.command, n, min_plms))
        return DistillConfig.model_validate(merged)
    except ValidationError as exc:
        raise config_error(exc) from None


def _count_message(command: str, n: int, min_plms: int) -> str:
    if min_plms > 1:
        return (
            f"{command} expects at least {min_plms} PLMs, got {n}; pass --model twice, or make several "
            "from one model with --seeds 1,2 or --poolings cls,mean."
        )
    return f"{command} expects one model, got {n} PLMs; use `trans-encoder distill` for several."


def format_table(summary: dict[str, Any]) -> str:
    """Table 1 of the run: each PLM's start and best models, then the ensembles (× 100; Spearman on
    the STS sets, and a line naming each set's metric when the run has its own sets)."""
    from flows.report import metric_note, table_rows

    rows = table_rows(summary)
    skip = {"model", "cycle", "dev", "avg"}
    tasks = list(dict.fromkeys(k for r in rows for k in r if k not in skip))
    width = max(len(r["model"]) for r in rows) + 2
    lines = [f"{'model':<{width}}{'dev':>8}" + "".join(f"{t:>8}" for t in tasks) + f"{'avg':>8}  cycle"]
    for r in rows:
        cells = [r.get("dev"), *(r.get(t) for t in tasks), r.get("avg")]
        text = "".join(f"{'-' if v is None else f'{v:.2f}':>8}" for v in cells)
        lines.append(f"{r['model']:<{width}}{text}  {r['cycle']}")
    for a in summary["averages"]:
        lines.append(
            f"cycle {a['cycle']}: label agreement (Spearman) bi {a['bi']['agreement_mean']}, "
            f"cross {a['cross']['agreement_mean']}; mean spread bi {a['bi']['spread']:.4f}, "
            f"cross {a['cross']['spread']:.4f}"
        )
    if note := metric_note(summary):
        lines.append(note)
    missing = summary["data"]["missing"]
    if missing:
        lines.append("missing benchmarks (not in the average): " + ", ".join(sorted(missing)))
    return "\n".join(lines)


def run_and_print(config: DistillConfig, summary_path: str | None) -> int:
    from flows.server_boot import boot_in_background

    boot = boot_in_background()  # the ephemeral server boots while torch and the flows import
    from flows.distill import run_distill

    boot.wait()
    summary = run_distill(config)
    cached = sum(s["cached"] for s in summary["stages"])
    print(f"\nstages: {len(summary['stages'])} ({cached} cached); summary: {summary['summary_uri']}")
    print(format_table(summary))
    if summary.get("published"):
        published = summary["published"]
        version = f"version {published['version']}" if published["version"] is not None else "nothing"
        print(f"registry: {version} ({published['decision']['reason']})")
    if summary_path:
        Path(summary_path).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    return run_and_print(build_config(args), args.summary)


def cmd_self_distill(args: argparse.Namespace) -> int:
    if args.model:
        args.model = [args.model]
    if args.cross_model:
        args.cross_model = [args.cross_model]
    return run_and_print(build_config(args, max_plms=1), args.summary)


def cmd_mutual_distill(args: argparse.Namespace) -> int:
    args.run_name = args.run_name or "mutual"  # the command's report folder, as before the merge
    return run_and_print(build_config(args, min_plms=2), args.summary)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="store root (default ./te-store; file://, memory://, s3://)")
    p.add_argument("--data", help="benchmark folder (default: $TRANS_ENCODER_DATA)")
    p.add_argument(
        "--pairs", help="your unlabeled pair file (Parquet/CSV/TSV/JSONL); default: benchmark pool"
    )
    p.add_argument("--device", help="every PLM's device: auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--run-name", help="report folder name under {store}/runs/")
    p.add_argument("--cycles", type=int)
    p.add_argument("--max-pairs", type=int, help="use a seeded random subset of the pool")
    p.add_argument("--summary", help="also write summary.json here")
    p.add_argument(
        "--publish",
        action="store_true",
        default=None,
        help="publish the selected models as a registry version if they pass the dev gate",
    )
    p.add_argument(
        "--dev",
        metavar="FILE",
        help="your labelled dev file (sentence1, sentence2, label): every selection uses it, not STS-B dev",
    )
    p.add_argument(
        "--test",
        action="append",
        metavar="NAME=FILE",
        help="a labelled test file reported as NAME (repeatable); metric: ROC-AUC for 0/1 labels, else "
        "Spearman (--set tests.NAME.metric=... overrides)",
    )
    p.add_argument("--label-column", help="label column of the --dev and --test files (default: label)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field (cycles=2), every PLM's (plms.bi.fit.epochs=2) or one PLM's "
        "(plms.NAME.cross.fit.learning_rate=1e-5); with self-distill also bi.X=V / cross.X=V; repeatable",
    )


def _several_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", help="a PLM's starting bi-encoder (repeatable)")
    p.add_argument("--cross-model", action="append", help="starting cross-encoder: one, or one per --model")
    p.add_argument("--seeds", help="comma-separated seeds: one PLM per seed and model, e.g. 1,2")
    p.add_argument(
        "--poolings", help="comma-separated poolings: one PLM per pooling and model, e.g. cls,mean"
    )
    p.add_argument(
        "--init", choices=["none", "simcse", "mirror_bert"], help="train raw PLMs without labels first"
    )
    p.add_argument(
        "--dask", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 ($TRANS_ENCODER_DASK_ADDRESS)"
    )
    p.add_argument("--max-concurrency", type=int, help="PLM stages at once on the thread pool")


def register_distill(sub: Any) -> None:
    """Add `distill`, `self-distill` and `mutual-distill` to the `trans-encoder` parser."""
    p = sub.add_parser("distill", help="run Trans-Encoder over one or more PLMs (cached, resumable)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, help="the run's seed (and every PLM's without --seeds)")
    _run_options(p)
    _several_options(p)
    p.set_defaults(func=cmd_distill)
    p = sub.add_parser("self-distill", help="run Trans-Encoder self-distillation (one PLM; alias of distill)")
    p.add_argument("--preset", default="paper", choices=SELF_PRESETS)
    p.add_argument(
        "--model", help="starting bi-encoder: HF name or folder (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument("--cross-model", help="starting cross-encoder (default: the bi-encoder's start)")
    p.add_argument("--seed", type=int)
    p.set_defaults(seeds=None, poolings=None, init=None, dask=None, max_concurrency=None)
    _run_options(p)
    p.set_defaults(func=cmd_self_distill)
    p = sub.add_parser(
        "mutual-distill", help="run Trans-Encoder mutual distillation (≥ 2 PLMs; alias of distill)"
    )
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=2021, help="every PLM's seed when --seeds is not given")
    _run_options(p)
    _several_options(p)
    p.set_defaults(func=cmd_mutual_distill)
