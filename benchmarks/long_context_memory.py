"""Peak memory of long-context steps on CPU: 8192-token training steps, a 4096-token evaluation.

The cases of ``tests/train/test_long_context.py``, measured: a tiny ModernBERT (2 layers,
32 hidden, one global layer and one with the paper's 128-token local window) takes one CLM
step and one MLM step (forward, backward, DecoupledAdamW) on one packed 8192-token row
with document masking (documents of 600, 5000, 1800 and 792 tokens), through SDPA, the
FlashAttention-2 path with its reference kernel, and optionally FlexAttention (eager on
CPU: it materialises the scores); then one 4096-token example through the fine-tuning
classification head ([CLS] + linear, no gradient).

Each case runs in a fresh process. Peak = the process's peak resident memory during the
step (Linux: VmHWM after resetting it through /proc/self/clear_refs) minus its resident
memory just before it: what the step itself adds on top of the model and the batch.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/long_context_memory.py [--cases sdpa-clm,eval-4096] [--flex]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEQ = 8192
DOCS = [600, 5000, 1800, 792]
CASES = ("sdpa-clm", "sdpa-mlm", "reference-clm", "reference-mlm", "eval-4096")
FLEX_CASES = ("flex-clm", "flex-mlm")
BACKENDS = {"sdpa": {}, "reference": {"attn_implementation": "flash_attention_2", "flash_attention_kernel": "reference"},
            "flex": {"attn_implementation": "flex_attention"}}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tiny_config(**overrides):
    from mcbio.config.schema import ModelConfig

    fields = dict(vocab_size=1024, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  max_position_embeddings=SEQ, local_attention=128, global_attn_every_n_layers=3)
    fields.update(overrides)
    return ModelConfig(**fields)


def run_case(case: str) -> dict:
    """Set up, then measure one step; runs in the child process."""
    import numpy as np
    import torch

    from mcbio.config.schema import OptimizerConfig, PhaseConfig
    from mcbio.data.corpus import iter_documents
    from mcbio.data.tokenizer import train_bpe_tokenizer
    from mcbio.model.build import build_masked_lm
    from mcbio.train.composer_model import EncoderPretrainingModel
    from mcbio.train.optim import build_optimizer
    from mcbio.train.phases import PlannedPhase

    tokenizer = train_bpe_tokenizer((d.text for d in iter_documents(max_documents=50)), vocab_size=1024)
    rng = np.random.default_rng(0)
    if case == "eval-4096":
        import tempfile

        from mcbio.evaluate.heads import SequenceClassifier
        from mcbio.model.export import export_hf

        folder = Path(tempfile.mkdtemp(prefix="long_eval_"))
        export_hf(build_masked_lm(tiny_config(), tokenizer, seed=0), tokenizer, folder)
        head = SequenceClassifier(str(folder), num_labels=4).eval()
        ids = torch.from_numpy(rng.integers(10, 1000, size=(1, 4096)))
        ids[0, 0] = tokenizer.cls_token_id
        mask = torch.ones_like(ids)

        def step() -> None:
            with torch.no_grad():
                head(ids, mask)
        tokens = 4096
    else:
        backend, objective = case.split("-")
        model = EncoderPretrainingModel(build_masked_lm(tiny_config(**BACKENDS[backend]), tokenizer, seed=17), tokenizer,
                                        data_seed=42).train()
        rate = 0.0 if objective == "clm" else 0.15
        model.set_phase(PlannedPhase(0, objective, PhaseConfig(objective=objective, mlm_probability=rate), 0, 1, 0))
        opt = build_optimizer(model, OptimizerConfig(), lr=1e-3)
        ids = torch.from_numpy(rng.integers(10, 1000, size=(1, SEQ)))
        docs = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(DOCS)])[None]
        batch = {"input_ids": ids, "document_ids": docs, "sample_index": torch.arange(1)}

        def step() -> None:
            loss = model.loss(model(batch), batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        tokens = SEQ
    import gc

    gc.collect()
    before = rss_bytes()
    exact = reset_peak()
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return {"case": case, "tokens": tokens, "peak_mib": (peak_bytes() - before) / 2**20, "seconds": seconds,
            "exact_peak": exact, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES + FLEX_CASES)}")
    parser.add_argument("--flex", action="store_true", help="add the FlexAttention cases (eager on CPU: slow, large)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child)))
        return
    cases = [c for c in args.cases.split(",") if c] + (list(FLEX_CASES) if args.flex else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    print(f"tiny ModernBERT (2 layers, 32 hidden, local window 128); rows of {SEQ} tokens, documents {DOCS}; CPU")
    print(f"{'case':<16} {'tokens':>7} {'peak MiB':>9} {'seconds':>8}")
    for case in cases:
        proc = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True, env=env, cwd=REPO)
        if proc.returncode:
            print(f"{case:<16} failed:\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        note = "" if r["exact_peak"] else "  (peak since process start: /proc/self/clear_refs unavailable)"
        print(f"{r['case']:<16} {r['tokens']:>7} {r['peak_mib']:>9.0f} {r['seconds']:>8.2f}{note}")


if __name__ == "__main__":
    main()
