"""The two single-task stages (distil, mix_pack) as datatrove steps, so that the same
executors (local or Slurm arrays with dependencies) run every stage of the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterable, List

from datatrove.pipeline.base import PipelineStep

from mcbio.config.curation import MIX_GROUPS, SourceConfig
from mcbio.files import write_json_atomic
from mcbio.jsonl import iter_jsonl

log = logging.getLogger(__name__)


def jsonl_files(folder: Path) -> List[Path]:
    return sorted(folder.rglob("*.jsonl*"))


def iter_jsonl_docs(folder: Path):
    """Documents written by datatrove's JsonlWriter (``*.jsonl.gz``), in sorted file order."""
    for path in jsonl_files(folder):
        for _, row in iter_jsonl(path):
            yield row


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
        write_json_atomic(Path(self.report_path), metrics)
        log.info("distilled labeler on %d LLM-labelled passages: %s", len(texts), metrics)
        yield from ()


def _curated_doc(path: Path, line_no: int, row: dict):
    """(group, MixDoc with the text as payload) of one curated row; bad fields name file and line."""
    from mcbio.data.curation.mix import MixDoc

    where = f"{path}:{line_no}"
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise ValueError(f"{where}: a curated document needs a 'text' string")
    meta = row.get("metadata") or {}
    try:
        tokens = int(meta.get("n_tokens") or len(row["text"].split()))
        factor = float(meta.get("upsample_factor", 1.0))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: metadata 'n_tokens' / 'upsample_factor' are not numbers") from None
    if tokens < 0 or not factor >= 0:
        raise ValueError(f"{where}: negative 'n_tokens' ({tokens}) or 'upsample_factor' ({factor})")
    # Without a group, a document is in a source's default group (the curated articles).
    group = meta.get("mix_group", SourceConfig.group)
    if group not in MIX_GROUPS:
        raise ValueError(f"{where}: unknown mix_group {group!r}: choose from {', '.join(MIX_GROUPS)}")
    # The id seeds the document's copy draw; without one, its place in the curated folder does.
    key = str(row["id"]) if row.get("id") is not None else f"{path.name}:{line_no}"
    return group, MixDoc(key, tokens, factor, row["text"])


class CuratedGroups:
    """The curated folder read group by group, streaming: a first pass tallies each group's
    tokens and notes which files hold it, so that later passes read only those files."""

    def __init__(self, folder: Path) -> None:
        from mcbio.data.curation.mix import GroupTally

        self.tallies: Dict[str, GroupTally] = {}
        self.files: Dict[str, List[Path]] = {}
        for path in jsonl_files(folder):
            for line_no, row in iter_jsonl(path):
                group, doc = _curated_doc(path, line_no, row)
                self.tallies.setdefault(group, GroupTally()).add(doc.tokens, doc.factor)
                files = self.files.setdefault(group, [])
                if not files or files[-1] != path:
                    files.append(path)

    def open(self, group: str):
        for path in self.files.get(group, ()):
            for line_no, row in iter_jsonl(path):
                g, doc = _curated_doc(path, line_no, row)
                if g == group:
                    yield doc


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

    def _tokenizer(self, texts: Iterable[str]):
        from mcbio.data.tokenizer import load_tokenizer, train_bpe_tokenizer

        if self.pack_cfg.tokenizer:
            return load_tokenizer(self.pack_cfg.tokenizer)
        tok = train_bpe_tokenizer(texts, vocab_size=self.pack_cfg.tokenizer_vocab_size, model_max_length=self.pack_cfg.seq_len)
        folder = Path(self.out_dir) / "tokenizer"
        tok.save_pretrained(folder)
        log.info("trained a %d-token BPE tokenizer on the mix -> %s", len(tok), folder)
        return tok

    def mix_and_pack(self) -> dict:
        """Stream the mix into the shards: memory holds the shuffle buffer, never the corpus."""
        import numpy as np
        from tqdm import tqdm

        from mcbio.data.curation.mix import StreamingMix
        from mcbio.data.shards import write_packed_shards

        curated = CuratedGroups(Path(self.curated_dir))
        m = self.mix_cfg
        # The spool holds token ids of documents awaiting later copy rounds; removed when done.
        mix = StreamingMix(curated.open, curated.tallies, dict(m.shares), m.total_tokens, m.seed,
                           m.renormalize_missing, buffer_size=m.shuffle_buffer,
                           spool_dir=Path(self.out_dir) / "mix_spool")
        # Lazy: read (a third pass) only when a tokenizer is trained on the mixed documents.
        tokenizer = self._tokenizer(mix.used_payloads())
        id_dtype = np.uint16 if len(tokenizer) <= 2**16 else np.int32

        def tokenise(texts: List[str]) -> List[np.ndarray]:
            ids = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
            return [np.asarray(x, dtype=id_dtype) for x in ids]

        mix.prepare = tokenise
        packed = {"tokens": 0, "documents": 0}

        def token_lists():
            expected = int(round(sum(mix.expected_copies.values())))
            for _, ids in tqdm(mix, desc="mix", unit="doc", total=expected, mininterval=2):
                packed["tokens"] += len(ids)
                packed["documents"] += 1
                yield ids

        shards_dir = Path(self.out_dir) / "shards"
        pack_stats = write_packed_shards(token_lists(), shards_dir, self.pack_cfg.seq_len, tokenizer.pad_token_id,
                                         sequences_per_shard=self.pack_cfg.sequences_per_shard, overwrite=True)
        spool = Path(self.out_dir) / "mix_spool"
        if spool.is_dir() and not any(spool.iterdir()):
            spool.rmdir()
        report = mix.report
        report["tokens_packed"] = packed["tokens"]
        write_json_atomic(Path(self.out_dir) / "mix_report.json", report)
        write_json_atomic(Path(self.out_dir) / "pack_report.json", {**pack_stats, "shards_dir": str(shards_dir)})
        self.stat_update("documents_mixed", value=packed["documents"])
        self.stat_update("tokens_packed", value=packed["tokens"])
        return report
