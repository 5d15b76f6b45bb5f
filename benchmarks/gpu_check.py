"""One-shot GPU check of the paper-scale path: attention backends, throughput, MFU, memory.

Made for a short slot on one GPU node (H100/H200, under 8 minutes) that has a CUDA torch and
nothing else, and no network. In one run it

1. installs the project's other dependencies (transformers, Composer, tokenizers, ...; pure
   Python or wheels that do not depend on torch) from a wheel folder prepared beforehand
   (--wheels DIR), into a private folder (--site), ignoring their torch pins
   (``pip install --no-index --no-deps``); the repository itself is used from this checkout;
2. reports torch, CUDA, the GPU, and whether flash_attn imports (FlashAttention-2 is measured
   only then; otherwise it says why not);
3. equivalence: on one packed batch (ModernCamemBERT Base, 2 x 8192 tokens, documents of many
   lengths, padding at the end of a row), the max abs difference of the logits of every
   available backend (FlashAttention-2, FlexAttention, SDPA, the FA2 path with the plain-torch
   reference kernel) under bf16 autocast, against the reference kernel in fp32 and against
   SDPA in bf16; bidirectional, causal with the half window, causal with the full window;
4. throughput: Base at 8192 tokens, tokens/s/GPU and MFU (the formula of
   benchmarks/train_throughput.py, against 989.4 TFLOP/s dense bf16, the H100 SXM figure, used
   for H200 too) for the CLM and the MLM phase with each available backend, and peak memory.
   The paper's figure to beat: ~190k tokens/s/GPU (11B tokens in 4 h on 4 x H100);
5. one evaluation forward of a 4096-token example through the fine-tuning classification head.

Prepare the wheel folder on any machine with network access, for the GPU machine's Python
version and platform (here Python 3.11 on x86_64 Linux; 38 wheels, ~40 MB):

    pip download --dest gpu_check_wheels --no-deps --only-binary=:all: --implementation cp \\
        --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -r benchmarks/gpu_check_requirements.txt

Copy it next to the checkout, then on the GPU node:

    python benchmarks/gpu_check.py --wheels gpu_check_wheels | tee gpu_check.txt

Check the folder and the whole plan first, on any machine of the same platform (CPU, tiny
model, reference kernel, about a minute; with --wheels it installs into --site as well):

    python benchmarks/gpu_check.py --dry-run [--wheels gpu_check_wheels]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "benchmarks" / "gpu_check_requirements.txt"
PEAK_TFLOPS = 989.4  # dense bf16, H100 SXM; the check uses it for H200 too (same tensor cores)
PAPER_TOKENS_PER_S = 190_000


# --------------------------------------------------------------------------- setup (stdlib only)


def requirements() -> list[tuple[str, str]]:
    """(distribution, version) pairs of the requirements file."""
    pins = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins.append((name.strip(), version.strip()))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_wheels(folder: Path) -> list[str]:
    """Requirements with no matching wheel (name-version-...whl) in ``folder``."""
    have = {tuple(_norm(p) for p in w.name.split("-")[:2]) for w in folder.glob("*.whl")}
    return [f"{n}=={v}" for n, v in requirements() if (_norm(n), _norm(v)) not in have]


def install(wheels: Path, site: Path) -> list[str]:
    """pip-install the wheel folder into ``site`` (once per folder content); returns what was done."""
    missing = missing_wheels(wheels)
    if missing:
        raise SystemExit(f"--wheels {wheels}: no wheel for {', '.join(missing)}; prepare the folder with the "
                         f"pip download command of `python {Path(__file__).name} --help`")
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--no-deps",
           "--target", str(site), "--upgrade", "--disable-pip-version-check", "-r", str(REQUIREMENTS)]
    stamp = site / ".gpu_check_stamp"
    digest = hashlib.sha256((REQUIREMENTS.read_text() + "".join(sorted(w.name for w in wheels.glob("*.whl")))).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return [f"dependencies already installed in {site}"]
    site.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"pip install failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    stamp.write_text(digest)
    return [f"installed {len(requirements())} wheels into {site} (no dependencies, no torch pins)"]


TORCHVISION_STUB = '''"""Stub written by benchmarks/gpu_check.py. Composer imports these torchvision names at import
time for image helpers the check never calls; a real torchvision is compiled against one torch
build, so it is not in the wheel folder."""


def _unavailable(*args, **kwargs):
    raise NotImplementedError("torchvision is a stub here (benchmarks/gpu_check.py)")
'''
# Module -> extra source: every torchvision name Composer 0.32 imports unconditionally.
STUB_MODULES = {
    "__init__": "from . import datasets, models, ops, transforms, utils  # noqa: F401,E402\n",
    "transforms": "",
    "models": "",
    "datasets": "class VisionDataset:  # noqa: D101\n    pass\n",
    "ops": "box_convert = _unavailable\n",
    "utils": "draw_segmentation_masks = _unavailable\n",
}


def ensure_torchvision(site: Path) -> str | None:
    """Composer needs ``import torchvision`` to succeed; stub it in ``site`` when it cannot."""
    try:
        importlib.import_module("torchvision")
        return None
    except Exception as err:  # absent, or built for another torch
        reason = f"{type(err).__name__}: {err}"
    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]
    # Libraries that probe for torchvision (and then import its models) decide now, while it is
    # absent, and cache the answer: only Composer's unconditional imports then meet the stub.
    for probing in ("torchmetrics", "transformers", "transformers.utils.import_utils"):
        importlib.import_module(probing)
    stub = site / "_stubs" / "torchvision"
    stub.mkdir(parents=True, exist_ok=True)
    for module, extra in STUB_MODULES.items():
        (stub / f"{module}.py").write_text(TORCHVISION_STUB + extra)
    sys.path.insert(0, str(stub.parent))
    importlib.invalidate_caches()
    return f"torchvision not importable ({reason[:120]}): a stub satisfies Composer's imports"


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    device: str
    dry_run: bool
    seq_len: int
    model: dict = field(default_factory=dict)  # ModelConfig overrides (none = Base)
    equivalence_rows: int = 2
    throughput_batch: int = 16  # sequences per optimizer step
    microbatch: int = 8
    warmup_steps: int = 2
    timed_steps: int = 4
    eval_tokens: int = 4096
    budget_s: float = 450.0


def make_plan(args) -> Plan:
    if args.dry_run:
        tiny = dict(vocab_size=1024, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                    max_position_embeddings=512, local_attention=16)
        return Plan(device="cpu", dry_run=True, seq_len=128, model=tiny, throughput_batch=2, microbatch=1,
                    warmup_steps=0, timed_steps=1, eval_tokens=128, budget_s=args.budget_s)
    return Plan(device="cuda", dry_run=False, seq_len=8192, throughput_batch=args.batch, microbatch=args.microbatch,
                warmup_steps=args.warmup, timed_steps=args.steps, budget_s=args.budget_s)


class Report:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.data: dict = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def section(self, title: str) -> None:
        print(f"\n== {title}  [{self.elapsed():.0f} s]", flush=True)

    def line(self, text: str) -> None:
        print(text, flush=True)


# --------------------------------------------------------------------------- checks (torch from here on)


def gib(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.1f} GiB"


def failure(err: BaseException) -> str:
    """One line: the exception and where it was raised."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}{where}"


def environment(plan: Plan, report: Report) -> dict[str, dict]:
    """Available backends: name -> ModelConfig overrides."""
    import torch

    report.section("environment")
    report.line(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    if plan.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible (use --dry-run on a machine without a GPU)")
        props = torch.cuda.get_device_properties(0)
        report.line(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB")
    import transformers
    import composer

    report.line(f"transformers {transformers.__version__}, composer {composer.__version__}")
    backends: dict[str, dict] = {}
    try:
        import flash_attn

        if plan.device == "cuda":
            from mcbio.model.varlen import load_varlen_kernel

            load_varlen_kernel("flash_attn")
            backends["flash_attention_2"] = {"attn_implementation": "flash_attention_2"}
            report.line(f"flash_attn {flash_attn.__version__}: FlashAttention-2 is measured")
        else:
            report.line(f"flash_attn {flash_attn.__version__} imports, but the dry run is on CPU: not measured")
    except Exception as err:
        report.line(f"flash_attn NOT available ({type(err).__name__}: {str(err)[:200]}): FlashAttention-2 is not measured")
    try:
        import mcbio.model.flex  # noqa: F401

        backends["flex_attention"] = {"attn_implementation": "flex_attention"}
        report.line("FlexAttention: available" + (" (compiled on CUDA)" if plan.device == "cuda" else " (eager on CPU)"))
    except ImportError as err:
        report.line(f"FlexAttention NOT available: {err}")
    backends["sdpa"] = {"attn_implementation": "sdpa"}
    backends["reference"] = {"attn_implementation": "flash_attention_2", "flash_attention_kernel": "reference"}
    report.data["environment"] = {"torch": torch.__version__, "backends": list(backends)}
    return backends


def model_config(plan: Plan, backend: dict, window: str = "half"):
    from mcbio.config.schema import ModelConfig

    return ModelConfig(**{**plan.model, **backend, "causal_local_window": window})


def synthetic_rows(plan: Plan, tokenizer, rows: int, seed: int = 0):
    """Packed rows of documents with a long-tailed length distribution."""
    import numpy as np

    from mcbio.data.packing import pack_documents

    rng = np.random.default_rng(seed)
    # Median ~600 tokens at 8192 (as train_throughput.py); at least 32 so a dry run's documents
    # still overrun its local window.
    median = max(600 * plan.seq_len / 8192, 32)
    lengths = [int(min(4 * plan.seq_len, max(8, n))) for n in rng.lognormal(np.log(median), 1.0, size=rows * 40)]
    docs = [rng.integers(10, 1000, size=n) for n in lengths]
    return pack_documents(docs, plan.seq_len, tokenizer.pad_token_id)


def equivalence(plan: Plan, backends: dict[str, dict], tokenizer, report: Report) -> None:
    import torch

    from mcbio.config.schema import PhaseConfig
    from mcbio.model.build import build_masked_lm
    from mcbio.train.composer_model import EncoderPretrainingModel
    from mcbio.train.phases import PlannedPhase
    from mcbio.train.precision import autocast

    report.section(f"equivalence: logits on one packed batch ({plan.equivalence_rows} x {plan.seq_len} tokens, bf16 autocast)")
    packed = synthetic_rows(plan, tokenizer, plan.equivalence_rows, seed=1)
    ids = torch.from_numpy(packed.input_ids[: plan.equivalence_rows].astype("int64"))
    docs = torch.from_numpy(packed.document_ids[: plan.equivalence_rows].astype("int64"))
    pad = plan.seq_len // 40
    docs[-1, -pad:], ids[-1, -pad:] = 0, tokenizer.pad_token_id  # padding at the end of a row
    batch = {"input_ids": ids.to(plan.device), "document_ids": docs.to(plan.device),
             "sample_index": torch.arange(len(ids), device=plan.device)}
    real = batch["document_ids"] != 0
    lengths = [int(n) for row in docs for n in torch.bincount(row)[1:] if n]
    report.line(f"{len(lengths)} document segments, {min(lengths)}-{max(lengths)} tokens; {pad} padding tokens")
    # One model per backend, same seed, so the same weights (the backends only swap attention code).
    models = {name: EncoderPretrainingModel(build_masked_lm(model_config(plan, backend), tokenizer, seed=17), tokenizer,
                                            data_seed=42).to(plan.device).eval()
              for name, backend in backends.items()}
    results = {}
    for mode, window in (("bidirectional", "half"), ("causal", "half"), ("causal", "full")):
        objective = "clm" if mode == "causal" else "mlm"
        phase = PlannedPhase(0, objective, PhaseConfig(objective=objective, mlm_probability=0.0 if mode == "causal" else 0.15), 0, 1, 0)
        logits = {}
        for name in ["reference-fp32", *models]:
            model = models["reference" if name == "reference-fp32" else name]
            model.set_phase(phase)
            model.switch.causal_local_window = window
            try:
                with torch.no_grad(), autocast("fp32" if name == "reference-fp32" else "amp_bf16", plan.device):
                    logits[name] = model(batch)["logits"][real].float()
            except Exception as err:  # one failing backend must not cost the others' figures
                report.line(f"  {name:<18} FAILED: {failure(err)}")
        if "reference-fp32" not in logits or "sdpa" not in logits:
            raise SystemExit("the fp32 reference or SDPA failed: nothing to compare against")
        truth, sdpa = logits.pop("reference-fp32"), logits["sdpa"]
        row = {name: {"max_vs_reference_fp32": (out - truth).abs().max().item(),
                      "mean_vs_reference_fp32": (out - truth).abs().mean().item(),
                      "max_vs_sdpa_bf16": (out - sdpa).abs().max().item()}
               for name, out in logits.items()}
        label = f"{mode}" + (f", {window} window" if mode == "causal" else " (window w/2 each side)")
        report.line(f"{label}: logits |max| {truth.abs().max().item():.2f}")
        for name, r in row.items():
            report.line(f"  {name:<18} vs reference fp32: max {r['max_vs_reference_fp32']:.3e} mean {r['mean_vs_reference_fp32']:.2e}"
                        f"   vs SDPA bf16: max {r['max_vs_sdpa_bf16']:.3e}")
        results[label] = row
        del logits, truth, sdpa
    del models
    if plan.device == "cuda":
        torch.cuda.empty_cache()
    report.line("bf16 rounds each logit to ~3 significant digits: differences at that level are the bf16 floor.")
    report.data["equivalence"] = results


def throughput(plan: Plan, backends: dict[str, dict], tokenizer, report: Report) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    import train_throughput as tt

    from mcbio.config.schema import PhaseConfig
    from mcbio.data.shards import PackedStream
    from mcbio.model.build import build_masked_lm
    from mcbio.train.composer_model import EncoderPretrainingModel
    from mcbio.train.phases import PlannedPhase

    size = "tiny model" if plan.dry_run else "Base (22 layers, 768)"
    report.section(f"throughput: {size}, {plan.seq_len} tokens, {plan.throughput_batch} sequences/step "
                   f"(micro-batch {plan.microbatch}), bf16 autocast, DecoupledAdamW")
    shards = tt.InMemoryShards(synthetic_rows(plan, tokenizer, max(64, 4 * plan.throughput_batch)))
    results = {}
    measured = [b for b in backends if b != "reference" or plan.dry_run]  # the reference kernel is for correctness
    for name in measured:
        model = EncoderPretrainingModel(build_masked_lm(model_config(plan, backends[name]), tokenizer, seed=17), tokenizer,
                                        data_seed=42, causal_local_window="half").to(plan.device)
        for objective in ("clm", "mlm"):
            if report.elapsed() > plan.budget_s:
                report.line(f"  {name} {objective}: skipped (over the {plan.budget_s:.0f} s budget)")
                continue
            rate = 0.0 if objective == "clm" else 0.15
            model.set_phase(PlannedPhase(0, objective, PhaseConfig(objective=objective, mlm_probability=rate), 0, 1, 0))
            model.train()
            if plan.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            stream = PackedStream(shards, plan.throughput_batch, seed=42)
            micro, r = plan.microbatch, None
            while r is None and micro >= 1:
                try:
                    r = tt.timed_steps(model, stream, plan.timed_steps, plan.warmup_steps, plan.device, micro, bf16=True)
                except torch.OutOfMemoryError:
                    report.line(f"  {name:<18} {objective}: out of memory at micro-batch {micro}; halving it")
                    model.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                    micro //= 2
                except Exception as err:  # report and go on with the other backends
                    report.line(f"  {name:<18} {objective}: FAILED: {failure(err)}")
                    model.zero_grad(set_to_none=True)
                    break
            if r is None:
                continue
            sample = np.concatenate([np.bincount(shards.row(stream.row_at(p))[1])[1:] for p in range(min(64, len(shards)))])
            flops, formula = tt.train_flops_per_token(model, sample[sample > 0], objective == "clm")
            mfu = r["tokens_per_s"] * flops / (PEAK_TFLOPS * 1e12)
            peak = torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None
            report.line(f"  {name:<18} {objective}: {r['tokens_per_s']:>10,.0f} tokens/s/GPU   MFU {100 * mfu:5.1f} %   "
                        f"{r['s_per_step']:.3f} s/step   micro-batch {micro}   peak memory {gib(peak)}")
            results[f"{name}/{objective}"] = {**r, "mfu": mfu, "flops_per_token": flops, "peak_gib": peak, "microbatch": micro}
        del model
    report.line(f"MFU = tokens/s/GPU x FLOPs/token / {PEAK_TFLOPS} TFLOP/s (dense bf16, H100 SXM; same figure for H200). "
                f"Paper: ~{PAPER_TOKENS_PER_S:,} tokens/s/GPU (11B tokens in 4 h on 4 x H100).")
    if results:
        report.line("formula (last run):\n" + textwrap.indent(formula, "  "))
    report.data["throughput"] = results


def evaluation(plan: Plan, tokenizer, report: Report) -> None:
    import torch

    from mcbio.evaluate.heads import SequenceClassifier
    from mcbio.model.build import build_masked_lm
    from mcbio.model.export import export_hf
    from mcbio.train.precision import autocast

    report.section(f"evaluation: one {plan.eval_tokens}-token example through the classification head ([CLS] + linear)")
    with tempfile.TemporaryDirectory(prefix="gpu_check_hf_") as folder:
        export_hf(build_masked_lm(model_config(plan, {"attn_implementation": "sdpa"}), tokenizer, seed=17), tokenizer, folder)
        head = SequenceClassifier(folder, num_labels=4).to(plan.device).eval()
    ids = torch.randint(10, 1000, (1, plan.eval_tokens), device=plan.device)
    ids[0, 0] = tokenizer.cls_token_id
    mask = torch.ones_like(ids)
    if plan.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), autocast("amp_bf16", plan.device):
        head(ids, mask)  # warm-up
        if plan.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits = head(ids, mask)
        if plan.device == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None
    impl = head.encoder.config._attn_implementation
    report.line(f"  {impl}: {seconds * 1000:.1f} ms, peak memory {gib(peak)}, logits finite: {bool(torch.isfinite(logits).all())}")
    report.data["evaluation"] = {"attn_implementation": impl, "seconds": seconds, "peak_gib": peak}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=None, help="wheel folder prepared with the pip download command above")
    parser.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "mcbio_gpu_check_site",
                        help="private folder the wheels are installed into (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, reference kernel: go through the whole plan")
    parser.add_argument("--batch", type=int, default=16, help="throughput: sequences per optimizer step")
    parser.add_argument("--microbatch", type=int, default=8, help="throughput: sequences per forward pass")
    parser.add_argument("--steps", type=int, default=4, help="throughput: timed steps per backend and phase")
    parser.add_argument("--warmup", type=int, default=2, help="throughput: untimed steps first (FlexAttention compiles here)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip remaining throughput runs past this many seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()

    report = Report()
    report.section("setup")
    if args.wheels:
        for line in install(args.wheels.resolve(), args.site.resolve()):
            report.line(line)
        sys.path.insert(0, str(args.site.resolve()))
        importlib.invalidate_caches()
    sys.path.insert(0, str(REPO))
    missing = [name for name in ("transformers", "composer", "torchmetrics", "omegaconf", "tokenizers")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"not importable: {', '.join(missing)}; give the wheel folder with --wheels DIR (see --help)")
    note = ensure_torchvision(args.site.resolve())
    if note:
        report.line(note)
    try:
        importlib.import_module("composer")
        importlib.import_module("transformers")
    except ImportError as err:
        raise SystemExit(f"{err}: give the wheel folder with --wheels DIR (see --help)")
    if not sys.warnoptions:
        import warnings

        warnings.simplefilter("ignore")  # library deprecation chatter would bury the figures
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    plan = make_plan(args)
    report.line(f"plan: {json.dumps(asdict(plan))}")

    from mcbio.data.corpus import iter_documents
    from mcbio.data.tokenizer import train_bpe_tokenizer

    # The model's vocabulary is the paper's (32,768); a small tokenizer only supplies the special tokens.
    tokenizer = train_bpe_tokenizer((d.text for d in iter_documents(max_documents=50)), vocab_size=1024)
    backends = environment(plan, report)
    equivalence(plan, backends, tokenizer, report)
    throughput(plan, backends, tokenizer, report)
    evaluation(plan, tokenizer, report)
    report.section(f"done in {report.elapsed():.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report.data, indent=1))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
