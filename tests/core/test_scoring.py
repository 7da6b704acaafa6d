"""Scoring invariants (trans_encoder_core.scoring, algorithm.md §1.4 A and C).

Symmetry, row alignment after de-duplication, independence of the batch size, and the sigmoid
relation between cross-encoder logits and scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tiny import CORPUS
from trans_encoder_core.batching import length_sorted_batches, tokenize_pairs, tokenize_texts, unique_index
from trans_encoder_core.encoders import BiEncoder, CrossEncoder
from trans_encoder_core.runtime import STREAMS_ENV, inference_streams, run_batches
from trans_encoder_core.scoring import bi_scores, cosine_rows, cross_logits, cross_scores, encode

pytestmark = pytest.mark.usefixtures("torch_single_thread")

FIRST = [*CORPUS[:8], "a", "zebra quokka"]
SECOND = [*CORPUS[4:12], "a dog is running on the grass near the river bank", "a"]
# Logits are unbounded (|x| up to ~5 here): with other padding the fp32 GEMMs block differently, and on
# some CPUs that moves a logit of -1.28 by 1.1e-5 (seen in CI). Letting the pairs attend to their
# padding moves these logits by 1e-4 to 2e-3 (measured), outside this tolerance for most pairs.
LOGIT_RTOL = 1e-4


@pytest.fixture(scope="module")
def bi(tiny_model: Path) -> BiEncoder:
    return BiEncoder.from_pretrained(tiny_model, pooling="mean", max_seq_length=16)


@pytest.fixture(scope="module")
def cross(tiny_cross_model: Path) -> CrossEncoder:
    return CrossEncoder.from_pretrained(tiny_cross_model, max_length=24)


def test_encode_returns_float32_rows_in_input_order(bi: BiEncoder) -> None:
    emb = encode(bi, FIRST, batch_size=3)
    assert emb.dtype == np.float32 and emb.shape == (len(FIRST), bi.model.config.hidden_size)
    alone = np.concatenate([encode(bi, [s]) for s in FIRST])
    np.testing.assert_allclose(emb, alone, atol=1e-5)


def test_bi_scores_are_cosines_and_symmetric(bi: BiEncoder) -> None:
    scores = bi_scores(bi, FIRST, SECOND)
    assert scores.dtype == np.float32 and scores.shape == (len(FIRST),)
    a, b = encode(bi, FIRST).astype(np.float64), encode(bi, SECOND).astype(np.float64)
    ref = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(scores, ref, atol=1e-5)
    np.testing.assert_allclose(bi_scores(bi, SECOND, FIRST), scores, atol=1e-6)
    assert np.all(np.abs(scores) <= 1 + 1e-6)
    assert np.ptp(scores) > 0.01


def test_bi_scores_dedup_keeps_row_alignment(bi: BiEncoder) -> None:
    # Repeated sentences within and across columns, and a pair of identical sentences.
    first = [FIRST[0], FIRST[1], FIRST[0], SECOND[2], FIRST[0], FIRST[3]]
    second = [SECOND[0], FIRST[0], SECOND[2], FIRST[0], SECOND[0], FIRST[3]]
    texts, index = unique_index(first + second)
    assert len(texts) < len(first) + len(second)
    assert [texts[i] for i in index] == first + second
    table = bi_scores(bi, first, second, batch_size=2)
    one_by_one = np.array([bi_scores(bi, [a], [b])[0] for a, b in zip(first, second, strict=True)])
    np.testing.assert_allclose(table, one_by_one, atol=1e-5)
    assert table[-1] == pytest.approx(1.0, abs=1e-6)  # identical sentences
    assert table[0] == pytest.approx(table[4], abs=1e-6)  # the same pair twice
    assert table[2] == pytest.approx(table[3], abs=1e-6)  # the same pair in both orders


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_scores_do_not_depend_on_batch_size(bi: BiEncoder, cross: CrossEncoder, batch_size: int) -> None:
    np.testing.assert_allclose(
        bi_scores(bi, FIRST, SECOND, batch_size=batch_size),
        bi_scores(bi, FIRST, SECOND, batch_size=128),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        cross_logits(cross, FIRST, SECOND, batch_size=batch_size),
        cross_logits(cross, FIRST, SECOND, batch_size=64),
        atol=1e-5,
        rtol=LOGIT_RTOL,
    )


def test_cross_scores_are_sigmoid_of_logits(cross: CrossEncoder) -> None:
    logits = cross_logits(cross, FIRST, SECOND)
    scores = cross_scores(cross, FIRST, SECOND)
    assert logits.dtype == np.float32 and scores.dtype == np.float32
    assert np.all((scores > 0) & (scores < 1))
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits.astype(np.float64))), atol=1e-6)
    assert np.ptp(scores) > 0.01
    # Pairs are ordered: (a, b) and (b, a) are different inputs to a cross-encoder.
    assert not np.allclose(cross_logits(cross, SECOND, FIRST), logits, atol=1e-4)


def test_cross_logits_follow_input_order(cross: CrossEncoder) -> None:
    logits = cross_logits(cross, FIRST, SECOND, batch_size=4)
    alone = np.array([cross_logits(cross, [a], [b])[0] for a, b in zip(FIRST, SECOND, strict=True)])
    np.testing.assert_allclose(logits, alone, atol=1e-5, rtol=LOGIT_RTOL)


def test_symmetric_cross_scores_average_both_orders(cross: CrossEncoder) -> None:
    forward = cross_scores(cross, FIRST, SECOND).astype(np.float64)
    backward = cross_scores(cross, SECOND, FIRST).astype(np.float64)
    sym = cross_scores(cross, FIRST, SECOND, symmetric=True)
    np.testing.assert_allclose(sym, (forward + backward) / 2, atol=1e-6)
    np.testing.assert_allclose(cross_scores(cross, SECOND, FIRST, symmetric=True), sym, atol=1e-6)


def test_cross_max_length_override_truncates(cross: CrossEncoder) -> None:
    long = ["a man is playing a guitar " * 4]
    other = ["the cat sits on the mat " * 4]
    short = cross_logits(cross, long, other, max_length=8)
    tokens = tokenize_pairs(cross.tokenizer, long, other, 8)
    assert tokens.lengths().max() == 8
    assert not np.allclose(short, cross_logits(cross, long, other), atol=1e-4)


@pytest.mark.parametrize("scorer", ["bi", "logits", "scores"])
def test_mismatched_columns_raise(bi: BiEncoder, cross: CrossEncoder, scorer: str) -> None:
    fn = {
        "bi": lambda a, b: bi_scores(bi, a, b),
        "logits": lambda a, b: cross_logits(cross, a, b),
        "scores": lambda a, b: cross_scores(cross, a, b),
    }[scorer]
    with pytest.raises(ValueError, match="equally long sentence columns, got 3 and 2 rows"):
        fn(FIRST[:3], SECOND[:2])


def test_cosine_rows_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)
    ref = np.array(
        [np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b, strict=True)]
    )
    np.testing.assert_allclose(cosine_rows(a, b), ref, atol=1e-6)
    assert cosine_rows(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0  # no division by zero


def test_length_sorted_batches_cover_every_row_once(bi: BiEncoder) -> None:
    tokens = tokenize_texts(bi.tokenizer, FIRST, bi.max_seq_length)
    batches = length_sorted_batches(tokens.lengths(), 3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(FIRST)))
    lengths = [tokens.lengths()[b].max() for b in batches]
    assert lengths == sorted(lengths, reverse=True)
    batch = tokens.collate(batches[-1], bi.model.device)
    assert batch["input_ids"].shape[1] == tokens.lengths()[batches[-1]].max()  # padded per batch only


# -- batches side by side on CPU threads (runtime.run_batches) --------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batches_side_by_side_equal_one_at_a_time(
    bi: BiEncoder, cross: CrossEncoder, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    results = {}
    for streams in ("1", "3"):
        monkeypatch.setenv(STREAMS_ENV, streams)
        results[streams] = (
            encode(bi, FIRST + SECOND, batch_size=2, precision=precision),
            cross_logits(cross, FIRST, SECOND, batch_size=2, precision=precision),
        )
    for one, side_by_side in zip(results["1"], results["3"], strict=True):
        np.testing.assert_array_equal(side_by_side, one)  # bitwise: each batch on one thread
    assert torch.get_num_threads() == 1  # the fixture's count is back after the workers ran


def test_side_by_side_batches_keep_the_callers_autocast(
    bi: BiEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit's dev evaluation runs the scorer inside the fit's autocast: the workers compute in it too."""
    import torch

    from trans_encoder_core.runtime import autocast

    cpu = torch.device("cpu")
    out = {}
    for streams in ("1", "2"):
        monkeypatch.setenv(STREAMS_ENV, streams)
        with autocast("bf16", cpu):
            out[streams] = encode(bi, FIRST + SECOND, batch_size=2)
    np.testing.assert_array_equal(out["2"], out["1"])
    assert not np.array_equal(out["2"], encode(bi, FIRST + SECOND, batch_size=2))  # bf16 ≠ fp32


def test_a_failing_batch_stops_the_others_and_raises() -> None:
    import threading

    import torch

    seen: list[int] = []
    lock = threading.Lock()

    def compute(idx: np.ndarray) -> None:
        with lock:
            seen.append(int(idx[0]))
        if idx[0] == 3:
            raise RuntimeError("batch 3 failed")

    batches = [np.array([i]) for i in range(200)]
    with pytest.raises(RuntimeError, match="batch 3 failed"):
        run_batches(batches, compute, torch.device("cpu"), "test", streams=2)
    assert 3 in seen and len(seen) < 200


def test_a_stop_request_ends_side_by_side_batches() -> None:
    import torch

    from trans_encoder_core.runtime import StopRequested, clear_stop, request_stop

    done: list[int] = []
    request_stop()
    try:
        with pytest.raises(StopRequested, match="at test"):
            run_batches(
                [np.array([i]) for i in range(8)],
                lambda i: done.append(1),
                torch.device("cpu"),
                "test",
                streams=2,
            )
    finally:
        clear_stop()
    assert done == []


@pytest.mark.parametrize(
    ("device", "n", "env", "expected"),
    [
        ("cpu", 10, {STREAMS_ENV: "4"}, 4),
        ("cpu", 3, {STREAMS_ENV: "8"}, 3),
        ("cpu", 1, {}, 1),
        ("cpu", 10, {STREAMS_ENV: "1"}, 1),
        ("cuda", 10, {STREAMS_ENV: "4"}, 1),
    ],
)
def test_inference_streams(device: str, n: int, env: dict[str, str], expected: int) -> None:
    import torch

    assert inference_streams(torch.device(device), n, env) == expected


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_inference_streams_rejects_bad_values(value: str) -> None:
    import torch

    with pytest.raises(
        ValueError, match=f"{STREAMS_ENV} expects a whole number of at least 1, got '{value}'"
    ):
        inference_streams(torch.device("cpu"), 10, {STREAMS_ENV: value})
