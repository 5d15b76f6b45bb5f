"""Pretraining throughput: packed sequences vs one document per padded row.

CPU (default): a tiny ModernBERT on the sample corpus; prints real (non-padding) tokens/s
per device and the padding fraction of each loader, for the MLM and CLM objectives.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_throughput.py

GPU (``--gpu``): ModernCamemBERT Base at 8192 tokens with FlashAttention-2, bf16 autocast,
DecoupledAdamW; prints tokens/s/GPU and model FLOPs utilisation (formula printed). The FLOPs
count the attention that runs: document-masked keys, and local layers' reach from
``--causal-local-window`` (the model's ``causal_local_window``; the paper's is ``half``).
Paper anchor: 11B tokens in 4 h on 4 H100 = ~190k tokens/s/GPU for Base.

    python benchmarks/train_throughput.py --gpu [--shards PATH] [--microbatch 8] [--objective clm] [--attn flex_attention]

``benchmarks/gpu_check.py`` runs this benchmark for every backend as part of a one-shot check.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mcbio.config.schema import ModelConfig, OptimizerConfig, PhaseConfig
from mcbio.data.corpus import iter_documents
from mcbio.data.packing import BoundaryTokens, PackedSequences, pack_documents
from mcbio.data.shards import PackedShards, PackedStream
from mcbio.data.tokenizer import train_bpe_tokenizer
from mcbio.model.build import build_masked_lm
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.optim import build_optimizer
from mcbio.train.phases import PlannedPhase
from mcbio.train.precision import autocast

# bf16 dense peak of one H100 SXM (989.4 TFLOP/s); override with --peak-tflops for other GPUs.
H100_BF16_PEAK_TFLOPS = 989.4


def per_document_rows(docs: list[list[int]], seq_len: int, pad_id: int) -> PackedSequences:
    """The unpacked baseline: each document (or seq_len chunk of one) alone in a padded row."""
    ids, doc_ids = [], []
    for doc in docs:
        for start in range(0, len(doc), seq_len):
            chunk = doc[start : start + seq_len]
            row = np.full(seq_len, pad_id, np.int32)
            row[: len(chunk)] = chunk
            d = np.zeros(seq_len, np.int32)
            d[: len(chunk)] = 1
            ids.append(row)
            doc_ids.append(d)
    return PackedSequences(np.stack(ids), np.stack(doc_ids))


class InMemoryShards(PackedShards):
    def __init__(self, packed: PackedSequences) -> None:  # noqa: D107 - a PackedShards without a folder
        self.folder, self.packed = "<memory>", packed
        self.seq_len = packed.input_ids.shape[1]
        self.offsets = np.array([0, len(packed.input_ids)])

    def row(self, index: int):
        return self.packed.input_ids[index], self.packed.document_ids[index]


def make_model(cfg: ModelConfig, tokenizer, objective: str, rate: float, device: str) -> EncoderPretrainingModel:
    model = EncoderPretrainingModel(build_masked_lm(cfg, tokenizer, seed=17), tokenizer, data_seed=42,
                                    causal_local_window=cfg.causal_local_window,
                                    document_masking=cfg.document_masking).to(device)
    model.set_phase(PlannedPhase(0, objective, PhaseConfig(objective=objective, mlm_probability=rate), 0, 1, 0))
    return model.train()


def timed_steps(model, stream: PackedStream, steps: int, warmup: int, device: str, microbatch: int, bf16: bool) -> dict:
    opt = build_optimizer(model, OptimizerConfig(), lr=2e-4)
    it = iter(torch.utils.data.DataLoader(stream, batch_size=stream.per_rank))
    real = padded = 0
    elapsed = 0.0
    for step in range(warmup + steps):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(it).items()}
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for start in range(0, batch["input_ids"].shape[0], microbatch):  # gradient accumulation
            micro = {k: v[start : start + microbatch] for k, v in batch.items()}
            with autocast("amp_bf16" if bf16 else "fp32", device):  # as Composer's amp_bf16
                loss = model.loss(model(micro), micro)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            elapsed += time.perf_counter() - t0
            real += int((batch["document_ids"] != 0).sum())
            padded += batch["document_ids"].numel()
    return {"tokens_per_s": real / elapsed, "padding_fraction": 1 - real / padded, "s_per_step": elapsed / steps}


def attended_keys_per_token(doc_lengths: np.ndarray, causal: bool, reach: int | None) -> float:
    """Mean number of keys a query attends to, over the tokens of documents of these lengths.

    Document-masked; ``reach``: how far a local layer looks on each side it looks at (None =
    global); causal: only keys behind (and the query itself), else both sides. Exact counts,
    documents shorter than the window included.
    """
    n = doc_lengths.astype(np.float64)
    if reach is None:
        pairs = n * (n + 1) / 2 if causal else n * n
    else:
        m = np.minimum(reach, n - 1)  # distances 1..m exist inside a document of n tokens
        one_side = m * n - m * (m + 1) / 2  # pairs at distance 1..m
        pairs = n + (1 if causal else 2) * one_side
    return float(pairs.sum() / n.sum())


def local_reach(model: EncoderPretrainingModel, causal: bool) -> int:
    """Tokens a local layer sees on one side, as the model runs: the switch's causal window, or w/2 each side."""
    if causal:
        return model.switch.causal_left_window()
    return model.model.config.local_attention // 2


def train_flops_per_token(model: EncoderPretrainingModel, doc_lengths: np.ndarray, causal: bool) -> tuple[float, str]:
    """6 x (non-embedding parameters + LM head) + attention, averaged over the tokens of the batch."""
    hf = model.model
    cfg = hf.config
    d, vocab = cfg.hidden_size, cfg.vocab_size
    emb = hf.model.embeddings.tok_embeddings.weight.numel()
    n_params = sum(p.numel() for p in hf.parameters()) - emb  # the decoder is tied to the embedding
    reach = local_reach(model, causal)
    global_keys = attended_keys_per_token(doc_lengths, causal, None)
    local_keys = attended_keys_per_token(doc_lengths, causal, reach)
    n_global = sum(layer.attn.local_attention == (-1, -1) for layer in hf.model.layers)
    n_local = cfg.num_hidden_layers - n_global
    attention = 12 * d * (n_global * global_keys + n_local * local_keys)
    flops = 6 * n_params + 6 * d * vocab + attention
    formula = (
        f"FLOPs/token = 6*N + 6*d*V + 12*d*(L_global*k_global + L_local*k_local)\n"
        f"  N={n_params:,} non-embedding params, d={d}, V={vocab}, L_global={n_global}, L_local={n_local},\n"
        f"  k_global={global_keys:.1f} keys/query (document-masked{', causal' if causal else ''}), "
        f"k_local={local_keys:.1f} ({'causal, ' + str(reach) + ' back' if causal else str(reach) + ' each side'})\n"
        f"  = {flops / 1e9:.3f} GFLOPs/token; MFU = tokens/s/GPU x FLOPs/token / peak"
    )
    return flops, formula


def cpu_benchmark(args) -> None:
    torch.set_num_threads(max(1, args.threads))
    docs_text = [d.text for d in iter_documents(max_documents=args.documents)]
    tokenizer = train_bpe_tokenizer(docs_text, vocab_size=1024)
    docs = [tokenizer(t)["input_ids"] for t in docs_text]
    seq = args.seq_len
    bounds = BoundaryTokens.from_tokenizer(tokenizer)
    loaders = {
        "packed": pack_documents(docs, seq, tokenizer.pad_token_id, bounds, max_split_padding=seq // 16),
        "packed-strict": pack_documents(docs, seq, tokenizer.pad_token_id),
        "per-document": per_document_rows(docs, seq, tokenizer.pad_token_id),
    }
    cfg = ModelConfig(vocab_size=1024, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                      max_position_embeddings=max(256, seq), local_attention=32, attn_implementation="sdpa")
    print(f"CPU, {torch.get_num_threads()} thread(s); tiny ModernBERT (3 layers, 64 hidden); {len(docs)} documents, "
          f"mean {np.mean([len(d) for d in docs]):.0f} tokens; rows of {seq}; batch {args.batch}; {args.steps} timed steps")
    print(f"{'loader':<14} {'objective':<9} {'padding':>8} {'real tokens/s':>14} {'s/step':>8}")
    for objective, rate in (("mlm", 0.3), ("clm", 0.0)):
        for name, packed in loaders.items():
            model = make_model(cfg, tokenizer, objective, rate, "cpu")
            stream = PackedStream(InMemoryShards(packed), args.batch, seed=42)
            r = timed_steps(model, stream, args.steps, 2, "cpu", args.batch, bf16=False)
            print(f"{name:<14} {objective:<9} {100 * r['padding_fraction']:7.2f}% {r['tokens_per_s']:14,.0f} {r['s_per_step']:8.3f}")


def gpu_benchmark(args) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device visible")
    seq = 8192
    # The schema's defaults are ModernCamemBERT Base.
    cfg = ModelConfig(attn_implementation=args.attn, flash_attention_kernel=args.flash_attention_kernel,
                      causal_local_window=args.causal_local_window)
    tokenizer = train_bpe_tokenizer((d.text for d in iter_documents()), vocab_size=1024)
    if args.shards:
        shards: PackedShards = PackedShards(args.shards)
    else:  # synthetic packed documents with a long-tailed length distribution (median ~600 tokens)
        rng = np.random.default_rng(0)
        docs = [rng.integers(10, 1024, size=int(min(20000, max(50, n)))) for n in rng.lognormal(6.4, 1.0, size=6000)]
        shards = InMemoryShards(pack_documents(docs, seq, tokenizer.pad_token_id))
    rate = 0.0 if args.objective == "clm" else 0.3
    model = make_model(cfg, tokenizer, args.objective, rate, "cuda")
    stream = PackedStream(shards, args.batch, seed=42)
    r = timed_steps(model, stream, args.steps, args.warmup, "cuda", args.microbatch, bf16=True)
    sample = np.concatenate([np.bincount(shards.row(stream.row_at(p))[1])[1:] for p in range(64)])
    flops, formula = train_flops_per_token(model, sample[sample > 0], args.objective == "clm")
    mfu = r["tokens_per_s"] * flops / (args.peak_tflops * 1e12)
    print(f"{torch.cuda.get_device_name()}: Base (22 layers, 768), {seq} tokens, {args.attn}, bf16, {args.objective}")
    print(f"batch {args.batch} x {seq} per step, micro-batch {args.microbatch}; {args.steps} timed steps after {args.warmup} warmup")
    print(f"tokens/s/GPU: {r['tokens_per_s']:,.0f} (paper anchor ~190,000 on H100); padding {100 * r['padding_fraction']:.2f} %")
    print(formula)
    print(f"MFU: {100 * mfu:.1f} % of {args.peak_tflops} TFLOP/s bf16 peak")
    print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="Base at 8192 tokens with FlashAttention-2 on one GPU")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (CPU default 8; GPU default 16)")
    parser.add_argument("--microbatch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256, help="CPU row length")
    parser.add_argument("--documents", type=int, default=None, help="CPU: cap on sample-corpus documents")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--objective", choices=("mlm", "clm"), default="clm")
    parser.add_argument("--attn", default="flash_attention_2", help="model.attn_implementation")
    parser.add_argument("--flash-attention-kernel", default="flash_attn", choices=("flash_attn", "reference"))
    parser.add_argument("--causal-local-window", default=ModelConfig.causal_local_window, choices=("half", "full"),
                        help="model.causal_local_window: the CLM local layers' reach (default: the paper's)")
    parser.add_argument("--shards", default=None, help="GPU: a packed shard folder instead of synthetic documents")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS)
    args = parser.parse_args()
    if args.gpu:
        args.steps, args.batch = args.steps or 10, args.batch or 16
        gpu_benchmark(args)
    else:
        args.steps, args.batch = args.steps or 10, args.batch or 8
        cpu_benchmark(args)


if __name__ == "__main__":
    main()
