"""The presets of flows/config.py: which speed options each turns on."""

from __future__ import annotations

from typing import Any

from flows.config import preset_config

SPEED_FIT = ("fast_dropout", "fused_optimizer", "eval_autocast")


def _without_speed(plm: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in plm.items() if k != "name"}
    for kind in ("bi", "cross"):
        enc = {k: v for k, v in plm[kind].items() if k != "score_precision"}
        enc["fit"] = {k: v for k, v in enc["fit"].items() if k not in SPEED_FIT}
        out[kind] = enc
    return out


def test_quick_turns_on_every_speed_option_and_is_otherwise_the_quick_mutual_recipe() -> None:
    (quick,) = preset_config("quick").plms
    for enc in (quick.bi, quick.cross):
        assert all(getattr(enc.fit, option) for option in SPEED_FIT)
        assert enc.score_precision == "auto"
    minilm, mpnet = preset_config("quick-mutual").plms
    # quick-mutual's only changes: MPNet as the second PLM and MiniLM's bi-encoder at lr 5e-5
    # (README, "Mutual distillation"); everything else is quick's recipe without the speed options.
    assert (minilm.bi.fit.learning_rate, mpnet.bi.fit.learning_rate) == (5e-5, 2e-5)
    assert mpnet.bi.model == "packaged-mpnet"
    minilm_as_quick = minilm.model_dump()
    minilm_as_quick["bi"]["fit"]["learning_rate"] = quick.bi.fit.learning_rate
    mpnet_as_quick = mpnet.model_dump()
    mpnet_as_quick["bi"]["model"] = quick.bi.model
    for plm in (minilm_as_quick, mpnet_as_quick):
        assert _without_speed(quick.model_dump()) == _without_speed(plm)


def test_quick_mutual_and_quick_mrpc_keep_the_settings_their_numbers_were_measured_with() -> None:
    for name in ("quick-mutual", "quick-mrpc"):
        for plm in preset_config(name).plms:
            for enc in (plm.bi, plm.cross):
                assert not any(getattr(enc.fit, option) for option in SPEED_FIT), name
                assert enc.score_precision == "fp32", name
