"""GPU throughput, ours vs sentence-transformers, on bert-base- and roberta-large-sized random models.

The models are randomly initialised from configs built here (no download): `BertConfig()` defaults
(bert-base) with the packaged model's WordPiece vocabulary, and `RobertaConfig(hidden_size=1024,
num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)` (roberta-large) with a byte-level
BPE trained here on the benchmark sentences. Each model runs bench/speed.py's measurements (scoring
and training, both sides, bf16 autocast by default) and the JSON, with torch.cuda.max_memory_allocated
per measurement, goes to `<out-dir>/gpu-speed-<gpu name>.json`, rewritten after each model so a run
cut short keeps what it finished.

Usage: bash bench/gpu.sh                                  # on the GPU machine (under 8 minutes on one H100)
       python bench/gpu_speed.py --smoke --device cpu     # tiny sizes on the CPU: checks that it runs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (bench/ is not a package)

GPU_SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "pool_pairs": None,
        "unique_pairs": 10_000,
        "cross_pairs": 8_000,
        "cross_steps": 200,
        "bi_steps": 100,
        "match_steps": 5,
        "warmup_rows": 512,
        "pipeline_pairs": 0,
    },
    "smoke": {
        "pool_pairs": 300,
        "unique_pairs": 100,
        "cross_pairs": 100,
        "cross_steps": 3,
        "bi_steps": 2,
        "match_steps": 2,
        "warmup_rows": 32,
        "pipeline_pairs": 0,
    },
}
# The nodrop checks need no GPU (bench/speed.py runs them on the CPU); skipping them keeps gpu.sh short.
GPU_MEASUREMENTS = ["bi_pool", "bi_unique", "cross", "train_cross", "train_bi"]


def corpus(data_root: str | None) -> list[str]:
    s1, s2, _ = speed.load_pool(data_root)
    return list(dict.fromkeys(s1 + s2))


def bert_tokenizer(texts: list[str]) -> Any:
    """The packaged all-MiniLM-L6-v2 WordPiece vocabulary (bert-base-uncased's), else one trained here."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        from trans_encoder_core.encoders import packaged_model_path

        tok = AutoTokenizer.from_pretrained(str(packaged_model_path()))
        tok.model_max_length = 512
        return tok
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to a trained vocabulary
        print(f"packaged vocabulary unavailable ({exc}); training a WordPiece vocabulary", file=sys.stderr)
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=30_522, special_tokens=special))
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
        model_max_length=512,
    )


def roberta_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE trained on the benchmark sentences (<s>=0, <pad>=1, </s>=2: RobertaConfig's ids)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
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
        model_max_length=512,
    )
    fast.model_input_names = ["input_ids", "attention_mask"]
    return fast


def build_model(kind: str, folder: Path, texts: list[str], *, smoke: bool, seed: int) -> dict[str, Any]:
    """Write a randomly initialised `kind` ("base" or "large") encoder and its tokenizer to `folder`."""
    import torch
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    tiny = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    if kind == "base":
        tokenizer = bert_tokenizer(texts)
        config = BertConfig(**(tiny if smoke else {}))
        config.vocab_size = max(config.vocab_size, len(tokenizer))
        model: Any = BertModel(config)
    else:
        tokenizer = roberta_tokenizer(texts, 2_000 if smoke else 16_000)
        large = {
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
        }
        config = RobertaConfig(**(tiny if smoke else large))
        model = RobertaModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    return {
        "kind": kind,
        "architecture": type(model).__name__,
        "parameters": params,
        "config": config.to_dict(),
    }


def gpu_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--smoke", action="store_true", help="tiny models and sizes (runs on the CPU in a minute)")
    p.add_argument("--models", nargs="+", choices=("base", "large"), default=["base", "large"])
    p.add_argument("--only", nargs="+", choices=speed.MEASUREMENTS, default=GPU_MEASUREMENTS)
    p.add_argument("--out-dir", default=str(speed.BENCH_DIR / "results"))
    p.add_argument("--in-process", action="store_true", help="all measurements in this process (faster)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument(
        "--budget-s", type=float, default=0, help="skip the models left once this is spent (0: none)"
    )
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--data", default=None)
    args = p.parse_args(argv)
    speed._quiet()
    sizes = GPU_SIZES["smoke" if args.smoke else "full"]
    name = gpu_name() + ("-smoke" if args.smoke else "")
    out = Path(args.out_dir) / f"gpu-speed-{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": speed.git_commit(),
        "settings": {
            "device": args.device,
            "precision": args.precision,
            "smoke": args.smoke,
            "sizes": sizes,
            "batch": speed.BATCH,
            "length": speed.LENGTH,
            "isolation": "in-process" if args.in_process else "one fresh process per measurement and side",
        },
        "versions": speed.versions(),
        "machine": speed.machine_info(),
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="te-bench-gpu-") as tmp:
        texts = corpus(args.data)
        for kind in args.models:
            if args.budget_s and time.time() - started > args.budget_s:
                report["models"][kind] = {"skipped": f"time budget of {args.budget_s:.0f}s spent"}
                continue
            t0 = time.time()
            folder = Path(tmp) / kind / "init"
            info = build_model(kind, folder, texts, smoke=args.smoke, seed=args.seed)
            print(
                f"{kind}: {info['architecture']} {info['parameters'] / 1e6:.1f}M parameters", file=sys.stderr
            )
            suite = speed.run_suite(
                model=str(folder),
                device=args.device,
                precision=args.precision,
                threads=None,
                sizes=sizes,
                only=args.only,
                in_process=args.in_process,
                seed=args.seed,
                data_root=args.data,
                work=Path(tmp) / kind,
                label=kind,
                repeat=args.repeat,
            )
            suite.pop("model_folders")
            info.pop("config")
            report["models"][kind] = {**info, **suite, "wall_seconds": time.time() - t0}
            print(f"\n## {kind} ({info['architecture']}, {info['parameters'] / 1e6:.0f}M, {args.precision})")
            print(speed.format_table(suite["rows"]), flush=True)
            report["wall_seconds"] = time.time() - started
            out.write_text(json.dumps(report, indent=2) + "\n")
    report["wall_seconds"] = time.time() - started
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
