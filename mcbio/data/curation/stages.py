"""The two single-task stages (distil, mix_pack) as datatrove steps, so that the same
executors (local or Slurm arrays with dependencies) run every stage of the pipeline."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Dict, List

from datatrove.pipeline.base import PipelineStep

from mcbio.data.curation.stats import write_json_atomic

log = logging.getLogger(__name__)


def iter_jsonl_docs(folder: Path):
    """Documents written by datatrove's JsonlWriter (``*.jsonl.gz``), in sorted file order."""
    for path in sorted(folder.rglob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no}: invalid JSON ({err.msg})") from None


class DistilStep(PipelineStep):
    """Train the passage labeler on the LLM-labelled sample of ``passages_dir``."""

    name = "distil"
    type = "🧬 CURATION"

    def __init__(self, passages_dir: str, model_path: str, report_path: str, cfg, seed: int = 0) -> None:
        super().__init__()
        self.passages_dir, self.model_path, self.report_path = passages_dir, model_path, report_path
        self.cfg, self.seed = cfg, seed

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from mcbio.data.curation.distil import train_labeler

        if rank != 0:
            return
        texts, labels = [], []
        for row in iter_jsonl_docs(Path(self.passages_dir)):
            lab = (row.get("metadata") or {}).get("labels")
            if lab is not None:
                texts.append(row["text"])
                labels.append(lab)
        labeler, metrics = train_labeler(texts, labels, self.cfg, self.seed)
        labeler.save(self.model_path)
        self.stat_update("labelled", value=len(texts))
        write_json_atomic(metrics, Path(self.report_path))
        log.info("distilled labeler on %d LLM-labelled passages: %s", len(texts), metrics)
        yield from ()


class MixPackStep(PipelineStep):
    """Mix the curated groups by token share, tokenise, and pack into the pretraining shards."""

    name = "mix_pack"
    type = "🧬 CURATION"

    def __init__(self, curated_dir: str, out_dir: str, mix_cfg, pack_cfg) -> None:
        super().__init__()
        self.curated_dir, self.out_dir = curated_dir, out_dir
        self.mix_cfg, self.pack_cfg = mix_cfg, pack_cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if rank != 0:
            return
        yield from ()
        self.mix_and_pack()

    def _tokenizer(self, texts: List[str]):
        from mcbio.data.tokenizer import load_tokenizer, train_bpe_tokenizer

        if self.pack_cfg.tokenizer:
            return load_tokenizer(self.pack_cfg.tokenizer)
        tok = train_bpe_tokenizer(texts, vocab_size=self.pack_cfg.tokenizer_vocab_size)
        folder = Path(self.out_dir) / "tokenizer"
        tok.save_pretrained(folder)
        log.info("trained a %d-token BPE tokenizer on the mix -> %s", len(tok), folder)
        return tok

    def mix_and_pack(self) -> dict:
        from tqdm import tqdm

        from mcbio.data.curation.mix import PoolDoc, plan_mix
        from mcbio.data.shards import write_packed_shards

        texts: Dict[str, List[str]] = {}
        pools: Dict[str, List[PoolDoc]] = {}
        for row in iter_jsonl_docs(Path(self.curated_dir)):
            meta = row.get("metadata") or {}
            group = meta.get("mix_group", "articles")
            texts.setdefault(group, []).append(row["text"])
            pools.setdefault(group, []).append(PoolDoc(int(meta.get("n_tokens") or len(row["text"].split())),
                                                       float(meta.get("upsample_factor", 1.0))))
        m = self.mix_cfg
        plan, report = plan_mix(pools, dict(m.shares), m.total_tokens, m.seed, m.renormalize_missing)
        used = sorted({(g, i) for g, i in plan})
        tokenizer = self._tokenizer([texts[g][i] for g, i in used])
        ids = {}
        for g, i in tqdm(used, desc="tokenise", unit="doc"):
            ids[(g, i)] = tokenizer(texts[g][i], add_special_tokens=True, verbose=False)["input_ids"]
        shards_dir = Path(self.out_dir) / "shards"
        pack_stats = write_packed_shards((ids[k] for k in plan), shards_dir, self.pack_cfg.seq_len,
                                         tokenizer.pad_token_id, sequences_per_shard=self.pack_cfg.sequences_per_shard,
                                         overwrite=True)
        report["tokens_packed"] = int(sum(len(ids[k]) for k in plan))
        write_json_atomic(report, Path(self.out_dir) / "mix_report.json")
        write_json_atomic({**pack_stats, "shards_dir": str(shards_dir)}, Path(self.out_dir) / "pack_report.json")
        self.stat_update("documents_mixed", value=len(plan))
        self.stat_update("tokens_packed", value=report["tokens_packed"])
        return report
