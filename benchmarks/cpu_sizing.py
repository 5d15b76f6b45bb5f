"""CPU pretraining tokens/s of candidate laptop-study models (how experiments/laptop_study is sized).

Trains a BPE tokenizer on ``general_fr`` (the study's base corpus), packs it into rows of
``--seq-len`` and times full training steps (forward, backward, DecoupledAdamW) of each
candidate ModernBERT for both objectives at ``--threads`` threads, as the study's single
pretraining element runs on a 2-core machine. Prints real tokens/s and seconds per step.

    .venv/bin/python benchmarks/cpu_sizing.py --data ../shared/data [--threads 2] [--seq-len 512]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from mcbio.config.schema import ModelConfig
from mcbio.data.corpus import iter_documents
from mcbio.data.packing import BoundaryTokens, pack_documents
from mcbio.data.shards import PackedStream
from mcbio.data.tokenizer import train_bpe_tokenizer
from train_throughput import InMemoryShards, make_model, timed_steps

# (hidden, layers, heads, intermediate): every candidate keeps global attention every 3 layers.
CANDIDATES = [(128, 6, 4, 192), (192, 6, 6, 288), (256, 6, 4, 384)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data root (general_fr/ under it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=8192, help="the study's base.model.vocab_size")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--documents", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.data) / "general_fr" / "debian_docs_fr.jsonl.gz"
    texts = [d.text for d in itertools.islice(iter_documents(corpus), args.documents)]
    tokenizer = train_bpe_tokenizer(texts, args.vocab)
    docs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    packed = pack_documents(docs, args.seq_len, tokenizer.pad_token_id, BoundaryTokens.from_tokenizer(tokenizer))
    print(f"CPU, {args.threads} thread(s); {len(docs)} general_fr documents, vocab {len(tokenizer)}; rows of "
          f"{args.seq_len}, batch {args.batch}; {args.steps} timed steps after 1 warmup")
    print(f"{'hidden':>6s} {'layers':>6s} {'params':>8s} {'objective':>9s} {'tokens/s':>9s} {'s/step':>7s}")
    for hidden, layers, heads, inter in CANDIDATES:
        cfg = ModelConfig(vocab_size=args.vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=inter, max_position_embeddings=max(1024, args.seq_len), local_attention=128,
                          attn_implementation="sdpa")
        for objective, rate in (("mlm", 0.3), ("clm", 0.0)):
            model = make_model(cfg, tokenizer, objective, rate, "cpu")
            params = sum(p.numel() for p in model.parameters()) / 1e6
            stream = PackedStream(InMemoryShards(packed), global_batch_size=args.batch, seed=0)
            res = timed_steps(model, stream, args.steps, 1, "cpu", args.batch, bf16=False)
            print(f"{hidden:6d} {layers:6d} {params:7.1f}M {objective:>9s} {res['tokens_per_s']:9.0f} {res['s_per_step']:7.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
