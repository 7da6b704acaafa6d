"""Tiny randomly initialised BERT and RoBERTa checkpoints built in code (seconds on CPU)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    MPNetConfig,
    MPNetModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaModel,
)

CORPUS = [
    "a man is playing a guitar",
    "a woman is slicing an onion",
    "the cat sits on the mat",
    "two dogs run in the park",
    "a child is riding a bike",
    "the stock market fell sharply today",
    "a man plays the flute",
    "someone is cutting vegetables",
    "a dog is running on the grass",
    "the president gave a speech",
    "people are walking on the street",
    "it is raining in the city",
]


def _train_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    if kind == "bert":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(CORPUS * 3, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        tok.decoder = decoders.WordPiece()
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=128,
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(
        CORPUS * 3,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=128,
    )
    fast.model_input_names = ["input_ids", "attention_mask"]
    return fast


def make_tiny_model(kind: str, folder: Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """Write a tiny random `kind` ("bert", "roberta" or "mpnet") encoder with its tokenizer to `folder`."""
    import torch

    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(kind)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=140,
    )
    if kind == "bert":
        model = BertModel(BertConfig(**common, pad_token_id=tokenizer.pad_token_id))
    elif kind == "mpnet":  # the byte-level BPE tokenizer has MPNet's special-token ids too
        model = MPNetModel(
            MPNetConfig(**common, pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2)
        )
    else:
        model = RobertaModel(
            RobertaConfig(
                **common,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=0,
                eos_token_id=2,
                type_vocab_size=1,
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
