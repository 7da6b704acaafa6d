"""`trans-encoder`: the command line over the flows (it parses arguments into configs and calls flows).

Flows run without a server by default (Prefect's ephemeral mode); with PREFECT_API_URL set they
report to that server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from flows.cli_mutual import register_mutual

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "trans_encoder_core,trans_encoder")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_value(text: str) -> Any:
    """A `--set` value: JSON when it parses (numbers, booleans, null, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_sets(base: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a nested dict (config field paths)."""
    for item in sets:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE (e.g. cross.fit.learning_rate=1e-4), got {item!r}.")
        path, value = item.split("=", 1)
        node = base
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SystemExit(f"--set {path}: {part} is not a group of settings.")
        node[leaf] = parse_value(value)
    return base


def config_error(exc: Any) -> Exception:
    """A pydantic ValidationError as one `ConfigError` naming each bad field, its rule and its value."""
    from trans_encoder_core.errors import ConfigError

    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "config"
        got = repr(err.get("input"))
        problems.append(f"{field}: {err['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})")
    return ConfigError(
        "Configuration expects valid values, got: "
        + "; ".join(problems)
        + "; fix them with --set FIELD=VALUE (or the matching option) and rerun."
    )


def build_self_distill_config(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from flows.config import preset_config

    explicit = {
        "store": args.store,
        "pairs": args.pairs,
        "data": args.data,
        "run_name": args.run_name,
        "cycles": args.cycles,
        "seed": args.seed,
        "device": args.device,
        "max_pairs": args.max_pairs,
    }
    try:
        base = preset_config(args.preset).model_dump()
        overrides = {k: v for k, v in explicit.items() if v is not None}
        if args.model:
            base["bi"]["model"] = args.model
        if args.cross_model:
            base["cross"]["model"] = args.cross_model
        merged = apply_sets({**base, **overrides}, args.set or [])
        return type(preset_config(args.preset)).model_validate(merged)
    except ValidationError as exc:
        raise config_error(exc) from None


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:6.2f}"


def format_comparison(summary: dict[str, Any]) -> str:
    """Before/after table: the starting bi-encoder against the selected bi and cross models."""
    rows = [
        ("start bi", summary["start"]["bi"]),
        ("best bi", summary["best"]["bi"]),
        ("best cross", summary["best"]["cross"]),
    ]
    tasks = list(dict.fromkeys(t for _, e in rows for t in e["test"]))
    header = f"{'model':<11}{'cycle':>6}{'dev':>8}" + "".join(f"{t:>8}" for t in tasks) + f"{'avg':>8}"
    lines = [header]
    for name, e in rows:
        cells = "".join(f"{_fmt(e['test'].get(t)):>8}" for t in tasks)
        lines.append(f"{name:<11}{e['cycle']:>6}{_fmt(e['dev']):>8}{cells}{_fmt(e['average']):>8}")
    missing = summary["data"]["missing"]
    if missing:
        lines.append("missing benchmarks (not in the average): " + ", ".join(sorted(missing)))
    return "\n".join(lines)


def cmd_self_distill(args: argparse.Namespace) -> int:
    from flows.self_distill import self_distill

    config = build_self_distill_config(args)
    summary = self_distill(config)
    cached = sum(s["cached"] for s in summary["stages"])
    print(f"\nstages: {len(summary['stages'])} ({cached} cached); summary: {summary['summary_uri']}")
    print(format_comparison(summary))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flows.tools import evaluate_model

    results = evaluate_model(
        args.model,
        kind=args.kind,
        data=args.data,
        store=args.store,
        tasks=args.tasks,
        max_length=args.max_length,
        device=args.device,
    )
    width = max(len(t) for t in results["tasks"]) if results["tasks"] else 4
    for task, value in results["tasks"].items():
        print(f"{task:<{width}}  {value:6.2f}")
    if results["average"] is not None:
        print(f"{'avg':<{width}}  {results['average']:6.2f}")
    for task, reason in results["missing"].items():
        print(f"{task:<{width}}  missing: {reason}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from flows.tools import score_file

    out = score_file(
        args.pairs,
        args.model,
        kind=args.kind,
        out=args.out,
        store=args.store,
        max_length=args.max_length,
        device=args.device,
        symmetric=args.symmetric,
    )
    print(f"wrote {out['rows']} scores to {out['out']}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from flows.data_fetch import fetch_benchmarks

    dest = Path(args.dest)
    result = fetch_benchmarks(dest, base_url=args.base_url)
    counts = f"{result['downloaded']} downloaded, {result['kept']} kept"
    print(f"{result['files']} files verified in {dest} ({counts})")
    print(f"use it with: export TRANS_ENCODER_DATA={dest.resolve()}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=None, help="store root (default ./te-store; file://, memory://, s3://)")
    p.add_argument("--data", default=None, help="benchmark folder (default: $TRANS_ENCODER_DATA)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, ...")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trans-encoder", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("self-distill", help="run Trans-Encoder self-distillation (cached, resumable)")
    _add_common(p)
    p.add_argument("--preset", default="paper", choices=["paper", "quick"])
    p.add_argument(
        "--pairs", help="your unlabeled pair file (Parquet/CSV/TSV/JSONL); default: benchmark pool"
    )
    p.add_argument(
        "--model", help="starting bi-encoder: HF name or folder (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument("--cross-model", help="starting cross-encoder (default: the bi-encoder's start)")
    p.add_argument("--run-name", help="report folder name under {store}/runs/")
    p.add_argument("--cycles", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-pairs", type=int, help="use a seeded random subset of the pool")
    p.add_argument("--summary", help="also write summary.json here")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set cross.fit.learning_rate=1e-4 (repeatable)",
    )
    p.set_defaults(func=cmd_self_distill)
    p = sub.add_parser("evaluate", help="Spearman x100 of a bi- or cross-encoder on the STS benchmarks")
    _add_common(p)
    p.add_argument("model", help="model folder, HF name, store URI, or 'packaged'")
    p.add_argument("--kind", choices=["bi", "cross"], default="bi")
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument(
        "--max-length", type=int, default=None, help="bi: tokens per sentence (32); cross: per pair"
    )
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("score", help="score a pair file with a bi- or cross-encoder into Parquet")
    _add_common(p)
    p.add_argument("pairs", help="pair file (Parquet/CSV/TSV/JSONL with sentence1, sentence2)")
    p.add_argument("--model", required=True)
    p.add_argument("--kind", choices=["bi", "cross"], default="bi")
    p.add_argument("--out", required=True, help="output Parquet path or URL")
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--symmetric", action="store_true", help="cross: average both pair orders")
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("data", help="benchmark data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("fetch", help="download STS12-16 and STS-B and verify their sha256")
    p.add_argument("--dest", default="te-data/sts", help="benchmark folder to fill (default te-data/sts)")
    p.add_argument("--base-url", default=None, help="mirror with the snapshot's layout")
    p.set_defaults(func=cmd_data_fetch)
    from flows.cli_ops import register_ops

    register_ops(sub)
    register_mutual(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from trans_encoder_core.errors import TransEncoderError

    try:
        return int(args.func(args))
    except ValidationError as exc:
        print(f"error: {config_error(exc)}", file=sys.stderr)
        return 2
    except TransEncoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
