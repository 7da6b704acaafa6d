"""`trans-encoder`: the command line over the flows (it parses arguments into configs and calls flows).

Flows run without a server by default (Prefect's ephemeral mode); with PREFECT_API_URL set they
report to that server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from trans_encoder_core.allocator import keep_heap

keep_heap()  # before any thread allocates: every thread then shares one kept heap (exact; see there)

from flows.cli_distill import register_distill  # noqa: E402

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "trans_encoder_core,trans_encoder")
# The core also logs outside flow runs (e.g. assembling a packaged model before a flow starts): those
# records belong on the console only, not in a UserWarning that no flow run could receive them.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flows.tools import evaluate_model, require_benchmarks

    require_benchmarks(args.data)  # before the flow starts: a missing folder is a usage error

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
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and every log line (also after the command)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    register_distill(sub)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; an expected error ends it with one `error:` line and exit status 2
    (`flows.cli_errors`), with its traceback only under `--debug`."""
    from prefect.exceptions import ExternalSignal, TerminationSignal

    from flows.cli_errors import (
        debug_requested,
        is_expected,
        quiet_console_tracebacks,
        report,
        restore_console,
        stop_now,
    )

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    quiet = [] if debug else quiet_console_tracebacks()
    # Prefect swaps in its own SIGTERM handler during a flow run and re-sends the signal to this one.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if main_thread:
        signal.signal(signal.SIGTERM, lambda signum, _frame: stop_now(TerminationSignal(signum)))
    try:
        return int(args.func(args))
    except Exception as exc:
        if not is_expected(exc):
            raise
        return report(exc, debug=debug)
    except (ExternalSignal, KeyboardInterrupt) as exc:
        stop_now(exc)
    finally:
        restore_console(quiet)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
