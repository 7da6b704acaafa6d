"""Operations subcommands of `trans-encoder`: `add-pairs` (inbox + event) and `models` (registry).

`register_ops(sub)` adds them to the parser built in `flows/cli.py`. None of them imports torch, so they
answer in about a second.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

DEFAULT_STORE = "./te-store"


def cmd_add_pairs(args: argparse.Namespace) -> int:
    """Copy a validated pair file into the inbox and announce it with a Prefect event."""
    from tasks.inbox import add_pair_file, emit_pairs_added
    from tasks.store import Store

    store = Store(args.store or DEFAULT_STORE)
    entry = add_pair_file(store, args.file, name=args.name)
    print(f"added {entry['pairs']} pairs ({entry['rows']} rows) as {entry['uri']}")
    if args.no_event:
        return 0
    try:
        api_url = emit_pairs_added(store, entry)
    except Exception as exc:  # noqa: BLE001 - the file is stored; the schedule will still find it
        print(f"warning: the event was not delivered ({exc}); the scheduled retrain will pick the file up")
        return 0
    if api_url is None:
        print(
            "no Prefect server configured (PREFECT_API_URL unset), so no event was sent; start the retrain "
            "deployment from the UI or let its schedule pick the file up"
        )
    else:
        print(f"event trans-encoder.pairs.added sent to {api_url}")
    return 0


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def format_versions(records: list[dict[str, Any]], latest: int | None) -> str:
    """One line per version: number, created, dev of bi and cross, pool size, new files."""
    header = f"{'version':>8}  {'created':<25}{'bi dev':>8}{'cross dev':>10}{'pairs':>8}  new files"
    lines = [header]
    for r in records:
        mark = "*" if r["version"] == latest else " "
        metrics = r.get("metrics", {})
        lines.append(
            f"{mark}{r['version']:>7}  {r.get('created', ''):<25}"
            f"{_fmt(metrics.get('bi', {}).get('dev')):>8}{_fmt(metrics.get('cross', {}).get('dev')):>10}"
            f"{_fmt(r.get('pool', {}).get('pairs')):>8}  {', '.join(r.get('new_files', [])) or '-'}"
        )
    if latest is not None:
        lines.append("* = latest")
    return "\n".join(lines)


def cmd_models_list(args: argparse.Namespace) -> int:
    from tasks.registry import latest_version_number, list_versions, read_version
    from tasks.store import Store

    store = Store(args.store or DEFAULT_STORE)
    numbers = list_versions(store)
    if not numbers:
        print(f"no published model in {store.root}/registry; run the retrain flow first")
        return 0
    records = [read_version(store, n) for n in numbers]
    if args.json:
        print(json.dumps(records, indent=2, sort_keys=True))
        return 0
    print(format_versions(records, latest_version_number(store)))
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    from tasks.registry import resolve_version
    from tasks.store import Store

    record = resolve_version(Store(args.store or DEFAULT_STORE), args.version)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


def register_ops(sub: Any) -> None:
    """Add `add-pairs` and `models {list,show}` to the `trans-encoder` subparsers `sub`."""
    store_help = f"store root (default {DEFAULT_STORE}; file://, s3://)"
    p = sub.add_parser("add-pairs", help="add a pair file to the store's inbox and trigger retraining")
    p.add_argument("file", help="pair file (Parquet/CSV/TSV/JSONL with sentence1, sentence2)")
    p.add_argument("--store", default=None, help=store_help)
    p.add_argument("--name", default=None, help="name in the inbox (default: the file's name)")
    p.add_argument("--no-event", action="store_true", help="do not emit the trans-encoder.pairs.added event")
    p.set_defaults(func=cmd_add_pairs)
    p = sub.add_parser("models", help="the model registry: published versions")
    models = p.add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", help="every published version (* = latest)")
    p.add_argument("--store", default=None, help=store_help)
    p.add_argument("--json", action="store_true", help="print the version records as JSON")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("show", help="one version's record as JSON")
    p.add_argument("version", nargs="?", default="latest", help="version number or 'latest' (default)")
    p.add_argument("--store", default=None, help=store_help)
    p.set_defaults(func=cmd_models_show)
