"""The core configs: per-field descriptions for the Prefect UI form, defaults and dumps unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from trans_encoder_core.config import (
    BiEncoderConfig,
    ContrastiveConfig,
    CrossEncoderConfig,
    FitConfig,
    InitConfig,
)

# model_dump(mode="json") of the defaults, captured before the descriptions were added: stage keys hash
# these dumps, so they must stay identical.
_FIT_BI = {
    "adam_eps": 1e-06,
    "batch_size": 128,
    "epochs": 10,
    "eval_steps": 200,
    "learning_rate": 5e-05,
    "max_grad_norm": 1.0,
    "precision": "auto",
    "seed": 2021,
    "warmup_ratio": 0.0,
    "weight_decay": 0.01,
}
DEFAULT_DUMPS: dict[type[BaseModel], dict[str, Any]] = {
    BiEncoderConfig: {
        "fit": _FIT_BI,
        "max_seq_length": 32,
        "model": "packaged",
        "pooling": "auto",
        "score_batch_size": 128,
    },
    CrossEncoderConfig: {
        "both_orders": True,
        "clamp_targets": False,
        "eval_max_length": 512,
        "fit": {**_FIT_BI, "batch_size": 32, "epochs": 1, "learning_rate": 2e-05, "warmup_ratio": 0.1},
        "max_length": 64,
        "model": None,
        "score_batch_size": 64,
        "symmetric_labels": False,
    },
    InitConfig: {
        "max_sentences": None,
        "mirror_bert": {
            "fit": {
                **_FIT_BI,
                "adam_eps": 1e-08,
                "batch_size": 200,
                "epochs": 1,
                "eval_steps": 0,
                "learning_rate": 2e-05,
            },
            "loss": "nt_xent",
            "max_seq_length": 50,
            "span_mask": 5,
            "temperature": 0.04,
        },
        "simcse": {
            "fit": {
                **_FIT_BI,
                "adam_eps": 1e-08,
                "batch_size": 64,
                "epochs": 1,
                "eval_steps": 125,
                "learning_rate": 3e-05,
                "weight_decay": 0.0,
            },
            "loss": "in_batch",
            "max_seq_length": 32,
            "span_mask": 0,
            "temperature": 0.05,
        },
    },
}


@pytest.mark.parametrize("cls", list(DEFAULT_DUMPS), ids=lambda c: c.__name__)
def test_default_dumps_are_unchanged(cls: type[BaseModel]) -> None:
    assert cls().model_dump(mode="json") == DEFAULT_DUMPS[cls]


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {f"{schema.get('title')}.{name}": prop for name, prop in schema.get("properties", {}).items()}
    for sub in schema.get("$defs", {}).values():
        found |= _properties(sub)
    return found


@pytest.mark.parametrize("cls", [*DEFAULT_DUMPS, FitConfig, ContrastiveConfig], ids=lambda c: c.__name__)
def test_every_field_has_a_description_in_the_json_schema(cls: type[BaseModel]) -> None:
    properties = _properties(cls.model_json_schema())
    assert properties and len(properties) >= len(cls.model_fields)
    missing = [name for name, prop in properties.items() if len(prop.get("description", "")) < 10]
    assert missing == []
    assert "Attributes:" not in (cls.__doc__ or "")  # the descriptions are the one source of truth


def test_descriptions_carry_the_documented_meaning() -> None:
    bi = BiEncoderConfig.model_json_schema()
    assert "all-MiniLM-L6-v2" in bi["properties"]["model"]["description"]
    fit = bi["$defs"]["FitConfig"]["properties"]
    assert "bf16" in fit["precision"]["description"] and "(seed, epoch)" in fit["seed"]["description"]
    cross = CrossEncoderConfig.model_json_schema()["properties"]
    assert "512" in cross["eval_max_length"]["description"]


def test_validation_is_unchanged() -> None:
    with pytest.raises(ValidationError, match="greater than 1"):
        BiEncoderConfig(max_seq_length=1)
    with pytest.raises(ValidationError, match="less than 1"):
        FitConfig(learning_rate=1e-5, batch_size=8, epochs=1, warmup_ratio=1.0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CrossEncoderConfig(max_lenght=64)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="Field required"):
        ContrastiveConfig()  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        InitConfig(max_sentences=1)
    with pytest.raises(ValidationError, match="frozen"):
        BiEncoderConfig().model = "x"  # type: ignore[misc]
