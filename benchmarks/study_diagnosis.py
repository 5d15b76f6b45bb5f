"""Why random init beats the laptop study's pretrained models: the diagnosis, in numbers.

On the study's own base (``experiments/laptop_study/config.yaml``, ``base.*``, pretrained here on
``general_fr`` minus every ``--heldout-every``-th document, which it never sees), this prints:

  1. masked-LM loss (15 %, 80/10/10, a fixed seed) on the held-out documents of every export against
     the same architecture with random weights, a unigram model of the training tokens (what a model
     that learned only token frequencies scores) and the uniform floor ln(vocab); beside it the mean
     pairwise cosine of the [CLS] states of the held-out rows (1.0: every input looks the same);
  2. the keys missing, unexpected or mismatched when the fine-tuning heads' encoder loads an export
     (``AutoModel.from_pretrained``; the MLM head's keys are the expected unexpected ones);
  3. test score x 100 per (model, lr) on ``--tasks`` over ``--seeds``: random init and the base;
  4. the pretraining curve: ``--curve-task`` at each model's best lr (mean dev score, ties to the lower
     lr, :func:`mcbio.evaluate.run.best_trial`) of the base's own checkpoints at ``--curve`` fractions
     of its budget (0 = random init).

Fine-tuning is the study's (``evaluation.finetune``) through ``mcbio.evaluate.run.evaluate_task``,
``--parallel`` runs at a time, one thread each. ``--scale`` multiplies the base's pretraining tokens
(the sizing of a longer base). Pretraining resumes from ``--out`` when relaunched, and what is done
is not redone. Writes ``<out>/diagnosis.json``.

    .venv/bin/python benchmarks/study_diagnosis.py                     # the study's base: ~35 min on 2 cores
    .venv/bin/python benchmarks/study_diagnosis.py --scale 4 --out runs/study_diagnosis_x4
    .venv/bin/python benchmarks/study_diagnosis.py --smoke             # every step, tiny: ~2 min
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mcbio.files import read_json_object, write_json_atomic
from mcbio.jsonl import iter_jsonl

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "experiments" / "laptop_study" / "config.yaml"
# --smoke: the smoke study's base, a few fine-tuning examples, 2 seeds.
SMOKE_SETTINGS = ["preset=smoke", "evaluation.finetune.max_train_examples=40",
                  "evaluation.finetune.max_eval_examples=40", "evaluation.finetune.epochs=1"]


# --------------------------------------------------------------------------- pretraining


def split_corpus(src: Path, out: Path, every: int) -> tuple[Path, Path, dict]:
    """``src``'s JSONL(.gz) documents into ``out/train/`` and ``out/heldout.jsonl.gz`` (every ``every``-th)."""
    train_dir, heldout = out / "train", out / "heldout.jsonl.gz"
    counts_file = out / "split.json"
    done = read_json_object(counts_file)
    if done is not None:
        return train_dir, heldout, done
    train_dir.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "heldout": 0}
    files = sorted(p for p in src.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
    with gzip.open(train_dir / "corpus.jsonl.gz", "wt", encoding="utf-8") as tr, \
            gzip.open(heldout, "wt", encoding="utf-8") as ho:
        docs = (doc for f in files for _, doc in iter_jsonl(f))
        for i, doc in enumerate(docs):
            split = "heldout" if i % every == 0 else "train"
            (ho if split == "heldout" else tr).write(json.dumps(doc, ensure_ascii=False) + "\n")
            counts[split] += 1
    write_json_atomic(counts_file, counts)
    return train_dir, heldout, counts


def scaled_train(train, scale: float):
    """The base's phases with ``scale`` x their tokens (warmup included), in whole batches."""
    def scale_tokens(tokens):
        return None if tokens is None else int(round(tokens * scale))
    phases = {name: dataclasses.replace(p, tokens=scale_tokens(p.tokens), warmup_tokens=scale_tokens(p.warmup_tokens))
              for name, p in train.phases.items()}
    return dataclasses.replace(train, phases=phases)


def pretrain_base(cfg, corpus: Path, out: Path, fractions: list[float], scale: float) -> dict[float, Path]:
    """Pretrain the study's base on ``corpus`` with a checkpoint at each fraction of its budget; export each.

    Returns fraction -> HF folder (fraction 0 is absent: random init reads the final export's config)."""
    import torch

    from mcbio.model.build import build_masked_lm
    from mcbio.model.export import export_hf
    from mcbio.pipelines.study import StudyPaths, base_config
    from mcbio.train.phases import plan_phases
    from mcbio.train.pretrain import pretrain

    base = base_config(cfg, StudyPaths(out))
    data = dataclasses.replace(base.data, corpus=str(corpus))
    train = scaled_train(base.train, scale)
    total = plan_phases(train.phases, train.global_batch_size * data.seq_len)[-1].end_batch
    at = {f: int(round(f * total)) for f in fractions if f > 0}
    interval = math.gcd(*at.values())
    train = dataclasses.replace(train, checkpoint=dataclasses.replace(
        train.checkpoint, save_interval=f"{interval}ba", save_num_checkpoints_to_keep=-1))
    exports = {f: out / f"hf-{round(100 * f)}" for f in at}
    if all((d / "config.json").is_file() for d in exports.values()):
        return exports
    print(f"pretraining the base: {total} batches, a checkpoint every {interval}", file=sys.stderr, flush=True)
    model, tokenizer, _, _, _ = pretrain(base.model, data, train, out / "base", run_name="study-diagnosis-base")
    export_hf(model, tokenizer, exports[max(at)])
    for f, batch in at.items():
        if batch == total:
            continue
        (ckpt,) = (out / "base" / "checkpoints").glob(f"ep*-ba{batch}-rank0.pt")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state"]["model"]
        partial = build_masked_lm(base.model, tokenizer, train.seed)
        partial.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
        export_hf(partial, tokenizer, exports[f])
    return exports


# --------------------------------------------------------------------------- the weights themselves


def heldout_rows(tokenizer, heldout: Path, seq_len: int, max_rows: int):
    import torch

    ids: list[int] = []
    for _, doc in iter_jsonl(heldout):
        ids += tokenizer(doc["text"], add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
        if len(ids) >= max_rows * (seq_len - 2):
            break
    body = seq_len - 2
    rows = [[tokenizer.cls_token_id, *ids[i:i + body], tokenizer.sep_token_id]
            for i in range(0, len(ids) - body + 1, body)][:max_rows]
    return torch.tensor(rows)


def unigram_log_probs(tokenizer, train_dir: Path):
    """log p(token) of the training documents' tokens (add-one smoothed)."""
    import torch

    counts = torch.ones(len(tokenizer), dtype=torch.float64)
    for f in sorted(train_dir.glob("*.jsonl.gz")):
        for _, doc in iter_jsonl(f):
            ids = tokenizer(doc["text"], add_special_tokens=False)["input_ids"]
            counts += torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=len(tokenizer)).double()
    return (counts / counts.sum()).log()


def weights_report(folder: Path, random: bool, rows, unigram, seed: int = 0) -> dict:
    """Masked-LM loss, the unigram model's loss on the same masked tokens, [CLS] cosine."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(folder, local_files_only=True)) if random
                 else AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True)).eval()
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        batch = collator([{"input_ids": r} for r in rows])
    labels = batch["labels"]
    nll, uni, n, cls = 0.0, 0.0, 0, []
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            out = model(input_ids=batch["input_ids"][i:i + 8], labels=labels[i:i + 8], output_hidden_states=True)
            k = int((labels[i:i + 8] != -100).sum())
            nll += float(out.loss) * k
            n += k
            masked = labels[i:i + 8][labels[i:i + 8] != -100]
            uni -= float(unigram[masked].sum())
            cls.append(out.hidden_states[-1][:, 0])
    states = torch.nn.functional.normalize(torch.cat(cls), dim=-1)
    cos = states @ states.T
    off = cos[~torch.eye(len(cos), dtype=torch.bool)]
    return {"mlm_loss": nll / n, "unigram_loss": uni / n, "uniform_loss": math.log(len(tokenizer)),
            "masked_tokens": n, "rows": len(rows), "cls_cosine": float(off.mean())}


def loading_report(folder: Path) -> dict:
    """What the fine-tuning heads' encoder (``AutoModel``) leaves out when it loads the export."""
    from transformers import AutoModel

    _, info = AutoModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    return {k: sorted(map(str, info.get(k, []))) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}


# --------------------------------------------------------------------------- fine-tuning


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _finetune(job: tuple) -> dict:
    from mcbio.evaluate.run import evaluate_task

    model, path, init, task, ft, seed, shared_data = job
    res = evaluate_task(path, task, seed, ft, shared_data, init=init)
    return {"model": model, "task": task.name, "lr": ft.lr, "seed": seed, "degenerate": res["degenerate"],
            "test": 100 * res["metrics"][res["primary_metric"]], "dev": 100 * res["dev_score"],
            "minutes": res["total_time_s"] / 60}


def finetune_all(jobs: list[tuple], parallel: int, cache: Path) -> list[dict]:
    """Every job once: results already in ``cache`` (a JSONL file) are not fine-tuned again."""
    import multiprocessing

    done = {}
    if cache.is_file():
        for _, r in iter_jsonl(cache):
            done[r["model"], r["task"], r["lr"], r["seed"]] = r
    todo = [j for j in jobs if (j[0], j[3].name, j[4].lr, j[5]) not in done]
    print(f"{len(jobs)} fine-tuning runs ({len(jobs) - len(todo)} done before), {parallel} at a time ...",
          file=sys.stderr, flush=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool, cache.open("a") as log:
        for i, r in enumerate(pool.map(_finetune, todo), 1):
            log.write(json.dumps(r) + "\n")
            log.flush()
            done[r["model"], r["task"], r["lr"], r["seed"]] = r
            print(f"  [{i}/{len(todo)}] {r['model']} {r['task']} lr {r['lr']:g} seed {r['seed']}: "
                  f"test {r['test']:.1f} dev {r['dev']:.1f} ({r['minutes']:.2f} min)", file=sys.stderr, flush=True)
    return [done[j[0], j[3].name, j[4].lr, j[5]] for j in jobs]


def by_setting(runs: list[dict]) -> dict[tuple[str, str, float], dict]:
    """(model, task, lr) -> mean/sd of test and dev over seeds."""
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["task"], r["lr"]), []).append(r)

    def sd(v):
        return statistics.stdev(v) if len(v) > 1 else 0.0
    return {k: {"test": statistics.fmean(r["test"] for r in g), "test_sd": sd([r["test"] for r in g]),
                "dev": statistics.fmean(r["dev"] for r in g), "seeds": len(g),
                "degenerate": sum(bool(r["degenerate"]) for r in g)} for k, g in groups.items()}


def best_lrs(table: dict) -> dict[tuple[str, str], float]:
    """(model, task) -> the lr of the best mean dev score (ties to the lower lr)."""
    from mcbio.evaluate.run import best_trial

    trials: dict[tuple[str, str], list[dict]] = {}
    for (model, task, lr), cell in sorted(table.items()):
        trials.setdefault((model, task), []).append({"params": {"lr": lr}, "dev_score": round(cell["dev"], 6)})
    return {k: best_trial(v)["params"]["lr"] for k, v in trials.items()}


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(STUDY))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="study config overrides")
    ap.add_argument("--out", default=str(REPO / "runs" / "study_diagnosis"))
    ap.add_argument("--scale", type=float, default=1.0, help="x the base's pretraining tokens")
    ap.add_argument("--heldout-every", type=int, default=20)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--tasks", nargs="+", default=["morfitt", "quaero_emea"])
    ap.add_argument("--curve-task", default="morfitt")
    ap.add_argument("--curve", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="the smoke study's base, tiny fine-tuning, 2 seeds")
    args = ap.parse_args(argv)
    if args.smoke:
        args.set = [*SMOKE_SETTINGS, *args.set]
        args.seeds = args.seeds[:2]

    from mcbio.config.checks import Problems
    from mcbio.config.loader import load_config
    from mcbio.config.study import StudyConfig
    from mcbio.pipelines.evaluate import resolve_suite

    cfg = load_config(StudyConfig, args.config, [*args.set, f"evaluation.tasks=[{','.join(args.tasks)}]"])
    problems = Problems()
    specs, _ = resolve_suite(cfg.evaluation, cfg.paths.shared_data, problems, "evaluation.")
    problems.raise_if_any("the diagnosis's study config")
    if args.curve_task not in specs:
        raise SystemExit(f"--curve-task {args.curve_task} is not one of --tasks")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_dir, heldout, split = split_corpus(Path(cfg.base.data.corpus), out / "corpus", args.heldout_every)
    exports = pretrain_base(cfg, train_dir, out, sorted(set(args.curve) | {1.0}), args.scale)
    final = exports[1.0]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final, local_files_only=True)
    rows = heldout_rows(tokenizer, heldout, cfg.base.data.seq_len, 64)
    unigram = unigram_log_probs(tokenizer, train_dir)
    weights = {"random": weights_report(final, True, rows, unigram)}
    weights.update({f"base-{round(100 * f)}": weights_report(d, False, rows, unigram) for f, d in sorted(exports.items())})
    loading = loading_report(final)

    def job(model, path, init, task, lr, seed):
        t, ft = specs[task]
        return model, str(path), init, t, dataclasses.replace(ft, lr=lr), seed, cfg.paths.shared_data
    jobs = [job(m, final, init, task, lr, seed) for m, init in (("random", "random"), ("base-100", "pretrained"))
            for task in args.tasks for lr in args.lrs for seed in args.seeds]
    jobs += [job(f"base-{round(100 * f)}", d, "pretrained", args.curve_task, lr, seed)
             for f, d in sorted(exports.items()) if f < 1.0 for lr in args.lrs for seed in args.seeds]
    runs = finetune_all(jobs, args.parallel, out / "finetune_runs.jsonl")
    table = by_setting(runs)
    best = best_lrs(table)

    print(f"\nheld-out general_fr: {split['heldout']} documents (every {args.heldout_every}th), {weights['random']['rows']}"
          f" rows of {cfg.base.data.seq_len} tokens; base pretrained on the other {split['train']}, x{args.scale:g} budget")
    print("\n| weights | MLM loss | unigram loss | uniform | [CLS] cosine |\n|---|---|---|---|---|")
    for name, w in weights.items():
        print(f"| {name} | {w['mlm_loss']:.3f} | {w['unigram_loss']:.3f} | {w['uniform_loss']:.3f} | {w['cls_cosine']:.3f} |")
    print(f"\nloading {final.name} into the heads' encoder: " + "; ".join(
        f"{k} {len(v)}" + (f" ({', '.join(v[:6])}{' ...' if len(v) > 6 else ''})" if v else "") for k, v in loading.items()))
    print("\n| model | task | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + " | best lr (dev) |")
    print("|---|---|" + "---|" * (len(args.lrs) + 1))
    for model in ("random", "base-100"):
        for task in args.tasks:
            cells = [table[model, task, lr] for lr in args.lrs]
            print(f"| {model} | {task} | " + " | ".join(
                f"{c['test']:.1f} ± {c['test_sd']:.1f}" + (f" ({c['degenerate']} degenerate)" if c["degenerate"] else "")
                for c in cells) + f" | {best[model, task]:g} |")
    curve = [("random", 0.0)] + [(f"base-{round(100 * f)}", f) for f in sorted(exports)]
    print(f"\n| {args.curve_task} | budget | tokens | best lr | test (best lr) | dev |\n|---|---|---|---|---|---|")
    tokens = sum(p.tokens for p in scaled_train(cfg.base.train, args.scale).phases.values())
    curve_rows = []
    for model, f in curve:
        lr = best[model, args.curve_task]
        c = table[model, args.curve_task, lr]
        curve_rows.append({"model": model, "fraction": f, "tokens": int(f * tokens), "lr": lr, **c})
        print(f"| {model} | {100 * f:.0f} % | {f * tokens / 1e6:.2f}M | {lr:g} | {c['test']:.1f} ± {c['test_sd']:.1f} | {c['dev']:.1f} |")
    result = {"split": split, "scale": args.scale, "weights": weights, "loading": loading, "runs": runs,
              "best_lr": {f"{m}/{t}": lr for (m, t), lr in best.items()}, "curve": curve_rows,
              "settings": {name: dataclasses.asdict(ft) for name, (_, ft) in specs.items()}}
    (out / "diagnosis.json").write_text(json.dumps(result, indent=1))
    print(f"\nwritten {out / 'diagnosis.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
