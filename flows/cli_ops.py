"""Operations subcommands of `trans-encoder`: `add-pairs` (inbox + event) and `models` (registry:
list, show, export).

`register_ops(sub)` adds them to the parser built in `flows/cli.py`. None of them imports torch, so they
answer in about a second.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def hub_repos(repo: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """The hub repo of each exported model: `repo` itself for one model, `repo-bi`/`repo-cross` for two."""
    return {kinds[0]: repo} if len(kinds) == 1 else {kind: f"{repo}-{kind}" for kind in kinds}


def cmd_models_export(args: argparse.Namespace) -> int:
    """Copy a version's models (checksums verified) into plain folders with model cards; optionally push."""
    from tasks.export import KINDS, export_version, push_to_hub
    from tasks.store import Store

    kinds = KINDS if args.kind == "both" else (args.kind,)
    repos = hub_repos(args.push_to_hub, kinds) if args.push_to_hub else None
    result = export_version(
        Store(args.store or DEFAULT_STORE), args.version, args.dir, kinds=kinds, model_ids=repos
    )
    for kind, folder in result["folders"].items():
        copied = result["models"][kind]
        check = "sha256 verified" if copied["verified"] else "not a store artifact: copied as is"
        print(f"version {result['version']} {kind}-encoder -> {folder} ({copied['files']} files, {check})")
    for kind, repo in (repos or {}).items():
        try:
            url = push_to_hub(result["folders"][kind], repo, private=args.private)
        except Exception as exc:  # noqa: BLE001 - offline, no login, no rights: the folders are still there
            print(
                f"error: upload of {result['folders'][kind]} to the hub repo {repo} failed ({exc}); the "
                "exported folders are complete: log in (`huggingface-cli login` or HF_TOKEN) and rerun "
                "with an empty DIR, or upload the folder yourself",
                file=sys.stderr,
            )
            return 1
        print(f"pushed {kind}-encoder to the hub: {url}")
    return 0


def register_ops(sub: Any) -> None:
    """Add `add-pairs` and `models {list,show,export}` to the `trans-encoder` subparsers `sub`."""
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
    p = models.add_parser(
        "export", help="copy a version's models into plain folders (DIR/bi, DIR/cross) with model cards"
    )
    p.add_argument("version", help="version number or 'latest'")
    p.add_argument("dir", help="a new or empty folder to write DIR/bi and DIR/cross into")
    p.add_argument("--store", default=None, help=store_help)
    p.add_argument(
        "--kind", choices=("bi", "cross", "both"), default="both", help="which models (default both)"
    )
    p.add_argument(
        "--push-to-hub",
        metavar="REPO",
        default=None,
        help="also upload to the Hugging Face hub: REPO for one --kind, REPO-bi and REPO-cross for both "
        "(needs network access and `huggingface-cli login` or HF_TOKEN)",
    )
    p.add_argument("--private", action="store_true", help="create the hub repos as private")
    p.set_defaults(func=cmd_models_export)
