"""Fine-tuning throughput on MORFITT: length-bucketed batches vs padding to the longest.

Three ways to batch the same training examples, each timed over one pass of
forward + backward + AdamW steps with the evaluation harness's own classifier:

* ``bucketed``: mcbio's length-bucketed batches, padded to the batch's longest input;
* ``random``: random batches padded to the batch's longest input;
* ``pad_to_max``: random batches padded to the longest input of the whole set (fixed shapes).

Usage (CPU, tiny random ModernBERT built here; or ``--model`` a local HF encoder on GPU)::

    MCBIO_DATA=../shared/data python benchmarks/eval_throughput.py [--examples 256] [--max-length 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def tiny_model_dir(texts: list[str], folder: Path, hidden: int, layers: int) -> Path:
    from mcbio.config.schema import ModelConfig
    from mcbio.data.tokenizer import train_bpe_tokenizer
    from mcbio.model.build import build_masked_lm
    from mcbio.model.export import export_hf

    tok = train_bpe_tokenizer(texts, vocab_size=4096)
    cfg = ModelConfig(vocab_size=4096, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                      intermediate_size=hidden * 3 // 2, max_position_embeddings=8192, local_attention=128,
                      attn_implementation="sdpa")
    return export_hf(build_masked_lm(cfg, tok, seed=0), tok, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MCBIO_DATA", "../shared/data"))
    parser.add_argument("--model", default=None, help="local HF encoder (default: a tiny random ModernBERT)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from mcbio.evaluate.batching import collate, make_batches
    from mcbio.evaluate.classify import multi_hot
    from mcbio.evaluate.encoding import encode_texts
    from mcbio.evaluate.heads import SequenceClassifier
    from mcbio.evaluate.run import read_split
    from mcbio.evaluate.tasks import get_task

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = read_split(get_task("morfitt"), "train", args.data)[: args.examples]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(tiny_model_dir([t for t, _ in rows], Path(tmp), args.hidden, args.layers))
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        labels = {label: i for i, label in enumerate(sorted({l for _, ls in rows for l in ls}))}
        targets = multi_hot([ls for _, ls in rows], labels)
        feats = encode_texts(tok, [t for t, _ in rows], list(targets), args.max_length)
        lengths = [len(f.input_ids) for f in feats]
        longest = max(lengths)
        print(f"MORFITT train[:{len(feats)}], max_length {args.max_length}: input tokens mean {sum(lengths) / len(lengths):.0f}, "
              f"max {longest}; batch {args.batch_size}; device {device}; model {args.model or f'tiny ModernBERT {args.layers}x{args.hidden}'}")
        loss_fn = torch.nn.BCEWithLogitsLoss()
        results = {}
        for mode in ("bucketed", "random", "pad_to_max"):
            torch.manual_seed(0)
            model = SequenceClassifier(model_dir, len(labels)).to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
            batches = make_batches(feats, args.batch_size, torch.Generator().manual_seed(0), bucketing=mode == "bucketed")
            padded = 0
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for idx in batches:
                batch = collate([feats[i] for i in idx], tok.pad_token_id, pad_to=longest if mode == "pad_to_max" else None)
                padded += batch["input_ids"].numel()
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                    logits = model(batch["input_ids"], batch["attention_mask"])
                loss_fn(logits.float(), batch["labels"].float()).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            results[mode] = len(feats) / seconds
            print(f"{mode:>10}: {results[mode]:7.2f} examples/s  ({seconds:6.1f} s, padding {1 - sum(lengths) / padded:5.1%} of tokens)")
        print(f"bucketed / random: x{results['bucketed'] / results['random']:.2f}; "
              f"bucketed / pad_to_max: x{results['bucketed'] / results['pad_to_max']:.2f}")


if __name__ == "__main__":
    main()
