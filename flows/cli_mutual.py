"""`trans-encoder mutual-distill`: mutual distillation from the command line (paper §2, mutual distillation).

The PLMs come from repeated `--model` options, or from one model run with several `--seeds` or
`--poolings` (or both: every combination is one PLM). Registered in flows/cli.py by
`register_mutual(sub)`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

SHARED_OPTIONS = ("store", "pairs", "data", "run_name", "cycles", "max_pairs", "max_concurrency")


def _split(text: str | None, kind: type) -> list[Any]:
    if not text:
        return []
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"expected a comma-separated list of {kind.__name__}, got {text!r}.") from None


def short_name(model: str) -> str:
    """A PLM name from a model reference: the last path or hub segment, in letters, digits, '.', '_', '-'."""
    last = model.rstrip("/").rsplit("/", 1)[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-._")[:48] or "model"


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


def plm_entries(args: argparse.Namespace, template: dict[str, Any]) -> list[dict[str, Any]]:
    """One PLM entry per (model, seed, pooling), on top of the preset's bi/cross settings."""
    models = args.model or ["packaged"]
    crosses = args.cross_model or []
    if crosses and len(crosses) not in (1, len(models)):
        raise SystemExit(
            f"--cross-model expects one value or one per --model ({len(models)}), got {len(crosses)}."
        )
    seeds, poolings = _split(args.seeds, int) or [args.seed], _split(args.poolings, str) or [None]
    names = iter(_names(models, seeds, poolings))
    entries = []
    for i, model in enumerate(models):
        cross = crosses[min(i, len(crosses) - 1)] if crosses else template["cross"].get("model")
        for seed in seeds:
            for pooling in poolings:
                bi = {**template["bi"], "model": model, **({"pooling": pooling} if pooling else {})}
                entry = {"name": next(names), "bi": bi, "cross": {**template["cross"], "model": cross}}
                entry |= {"init_method": args.init or "none", "device": args.device or "auto"}
                entries.append(entry | ({"seed": seed} if seed is not None else {}))
    if len(entries) < 2:
        raise SystemExit(
            f"mutual-distill expects at least 2 PLMs, got {len(entries)}; pass --model twice, or make "
            "several from one model with --seeds 1,2 or --poolings cls,mean."
        )
    return entries


def apply_plm_sets(entries: list[dict[str, Any]], sets: list[str]) -> None:
    """`--set plms.KEY=V` changes every PLM, `--set plms.NAME.KEY=V` only the PLM called NAME."""
    from flows.cli import apply_sets

    names = {e["name"]: e for e in entries}
    for item in sets:
        path, _, value = item.partition("=")
        parts = path.split(".")[1:]
        targets = [names[parts[0]]] if parts and parts[0] in names else entries
        rest = parts[1:] if parts and parts[0] in names else parts
        if not rest:
            raise SystemExit(f"--set {path}: name a PLM setting, e.g. plms.bi.fit.epochs=2.")
        for entry in targets:
            apply_sets(entry, [f"{'.'.join(rest)}={value}"])


def build_mutual_config(args: argparse.Namespace) -> Any:
    """The `MutualDistillConfig` of the command line: preset, then options, then `--set` (last wins)."""
    from pydantic import ValidationError

    from flows.cli import apply_sets
    from flows.mutual_config import MutualDistillConfig, mutual_preset
    from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig

    try:
        preset = mutual_preset(args.preset)
        template = preset.pop("plm_template", None) or {
            "bi": BiEncoderConfig(),
            "cross": CrossEncoderConfig(),
        }
        template = {k: v.model_dump() for k, v in template.items()}
        base = MutualDistillConfig(**preset).model_dump(exclude={"plms"})
        options = {k: getattr(args, k) for k in SHARED_OPTIONS if getattr(args, k) is not None}
        merged = {**base, **options, "plms": plm_entries(args, template)}
        if args.dask:
            merged["dask_address"] = args.dask
        sets = args.set or []
        apply_plm_sets(merged["plms"], [s for s in sets if s.startswith("plms.")])
        apply_sets(merged, [s for s in sets if not s.startswith("plms.")])
        return MutualDistillConfig.model_validate(merged)
    except ValidationError as exc:
        from flows.cli import config_error

        raise config_error(exc) from None


def format_table(summary: dict[str, Any]) -> str:
    """Table 1 of the run: each PLM's start and best models, then the ensembles (Spearman × 100)."""
    from flows.mutual_report import table_rows

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
    return "\n".join(lines)


def cmd_mutual_distill(args: argparse.Namespace) -> int:
    from flows.mutual_distill import run_mutual

    summary = run_mutual(build_mutual_config(args))
    cached = sum(s["cached"] for s in summary["stages"])
    print(f"\nstages: {len(summary['stages'])} ({cached} cached); summary: {summary['summary_uri']}")
    print(format_table(summary))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def register_mutual(sub: Any) -> None:
    """Add the `mutual-distill` subcommand to the `trans-encoder` parser."""
    p = sub.add_parser("mutual-distill", help="run Trans-Encoder mutual distillation over several PLMs")
    p.add_argument("--preset", default="paper", choices=["paper", "quick"])
    p.add_argument("--store", help="store root (default ./te-store; file://, s3://)")
    p.add_argument("--data", help="benchmark folder (default: $TRANS_ENCODER_DATA)")
    p.add_argument("--pairs", help="your unlabeled pair file; default: the benchmark pool")
    p.add_argument(
        "--model", action="append", help="a PLM's starting bi-encoder (repeatable; default packaged)"
    )
    p.add_argument("--cross-model", action="append", help="starting cross-encoder: one, or one per --model")
    p.add_argument("--seeds", help="comma-separated seeds: one PLM per seed and model, e.g. 1,2")
    p.add_argument(
        "--poolings", help="comma-separated poolings: one PLM per pooling and model, e.g. cls,mean"
    )
    p.add_argument("--seed", type=int, default=2021, help="every PLM's seed when --seeds is not given")
    p.add_argument(
        "--init", choices=["none", "simcse", "mirror_bert"], help="train raw PLMs without labels first"
    )
    p.add_argument("--device", help="every PLM's device (default auto: one GPU each when there are several)")
    p.add_argument(
        "--dask", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 ($TRANS_ENCODER_DASK_ADDRESS)"
    )
    p.add_argument("--max-concurrency", type=int, help="PLM stages at once on the thread pool")
    p.add_argument("--run-name", help="report folder name under {store}/runs/ (default mutual)")
    p.add_argument("--cycles", type=int)
    p.add_argument("--max-pairs", type=int, help="use a seeded random subset of the pool")
    p.add_argument("--summary", help="also write summary.json here")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field (cycles=2), every PLM's (plms.bi.fit.epochs=2) or one PLM's "
        "(plms.NAME.cross.fit.learning_rate=1e-5); repeatable",
    )
    p.set_defaults(func=cmd_mutual_distill)
