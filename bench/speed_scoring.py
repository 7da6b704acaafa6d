"""Scoring workloads of bench/speed.py: bi- and cross-encoder scoring, ours vs sentence-transformers.

Each builder returns (warmup, run): warmup() is untimed, run() is the timed call and returns a dict
with the scores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from speed_common import BATCH, LENGTH

Workload = tuple[Callable[[], Any], Callable[[], Any]]


def autocast(spec: dict[str, Any]) -> contextlib.AbstractContextManager[object]:
    """Theirs under bf16 when scoring: the whole call inside torch.autocast (they have no such option)."""
    import torch

    if spec["precision"] == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=spec["device_type"], dtype=torch.bfloat16)


def _workload(score: Callable[[list[str], list[str]], Any], table: dict[str, Any], rows: int) -> Workload:
    a, b = table["a"], table["b"]
    return (lambda: score(a[:rows], b[:rows])), (lambda: {"scores": score(a, b)})


def bi_score(spec: dict[str, Any], table: dict[str, Any]) -> Workload:
    """Ours: `scoring.bi_scores`; theirs: `SentenceTransformer.encode` of both columns + cosine."""
    bs = BATCH["bi_score"]
    if spec["impl"] == "ours":
        from trans_encoder_core.encoders import BiEncoder
        from trans_encoder_core.scoring import bi_scores

        bi = BiEncoder.from_pretrained(spec["folders"]["bi"], max_seq_length=LENGTH["bi"]).to(spec["device"])
        bi.packing = spec.get("packing", False)

        def ours(x: list[str], y: list[str]) -> Any:
            return bi_scores(bi, x, y, batch_size=bs, precision=spec["precision"])

        return _workload(ours, table, spec["warmup_rows"])
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import pairwise_cos_sim

    st = SentenceTransformer(spec["folders"]["bi"], device=spec["device"])
    st.max_seq_length = LENGTH["bi"]

    def theirs(x: list[str], y: list[str]) -> Any:
        with autocast(spec):
            ex = st.encode(x, batch_size=bs, convert_to_tensor=True, show_progress_bar=False)
            ey = st.encode(y, batch_size=bs, convert_to_tensor=True, show_progress_bar=False)
        return pairwise_cos_sim(ex.float(), ey.float()).cpu().numpy()

    return _workload(theirs, table, spec["warmup_rows"])


def cross_score(spec: dict[str, Any], table: dict[str, Any]) -> Workload:
    """Ours: `scoring.cross_scores`; theirs: `CrossEncoder.predict`."""
    bs = BATCH["cross_score"]
    if spec["impl"] == "ours":
        from trans_encoder_core.encoders import CrossEncoder
        from trans_encoder_core.scoring import cross_scores

        cross = CrossEncoder.from_pretrained(spec["folders"]["cross"], max_length=LENGTH["cross"])
        cross.to(spec["device"])
        cross.packing = spec.get("packing", False)

        def ours(x: list[str], y: list[str]) -> Any:
            return cross_scores(cross, x, y, batch_size=bs, precision=spec["precision"])

        return _workload(ours, table, spec["warmup_rows"])
    from sentence_transformers import CrossEncoder as STCrossEncoder

    st = STCrossEncoder(spec["folders"]["cross"], device=spec["device"], max_length=LENGTH["cross"])

    def theirs(x: list[str], y: list[str]) -> Any:
        with autocast(spec):
            out = st.predict(list(zip(x, y)), batch_size=bs, show_progress_bar=False, convert_to_numpy=True)
        return out.astype("float32")

    return _workload(theirs, table, spec["warmup_rows"])
