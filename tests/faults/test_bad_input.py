"""Bad input stops at launch (or at once in the job) with one line naming the key, file and line.

Issue 25's rows: invalid UTF-8 in a curation source or a pretraining corpus, fine-tuning
sizes out of range, output folders that cannot be written.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mcbio.cluster.launcher import launch
from tests.conftest import launch_refused, mounted_tmpfs
from mcbio.config import PretrainRunConfig
from mcbio.config.checks import Problems, check_utf8_corpus, check_writable_dir
from mcbio.config.curation import CurationRunConfig, SourceConfig
from mcbio.config.evaluation import EvaluateRunConfig
from mcbio.config.schema import FinetuneConfig
from mcbio.data import corpus
from mcbio.data.corpus import CorpusError, find_invalid_utf8, iter_documents
from mcbio.pipelines.curation import plan_curation
from mcbio.pipelines.evaluate import plan_evaluation
from mcbio.pipelines.pretrain import plan_pretraining

REPO = Path(__file__).resolve().parents[2]
CURATION = REPO / "experiments" / "curation" / "config.yaml"
EVALUATE = REPO / "experiments" / "evaluate" / "config.yaml"
PRETRAIN = REPO / "experiments" / "base_clm_detour" / "config.yaml"

DOCUMENTS = 93
BAD_LINE = 57  # 1-based: datatrove's own JsonlReader read the 56 lines before it, then stopped
BAD_BYTE = b"\xff"


refused = launch_refused


@pytest.fixture(scope="module")
def french_lines(shared_data) -> list[bytes]:
    """The first JSONL lines of the real French corpus (``general_fr``)."""
    with gzip.open(shared_data / "general_fr" / "debian_docs_fr.jsonl.gz", "rb") as handle:
        return [next(handle) for _ in range(DOCUMENTS)]


def corrupted_jsonl(folder: Path, lines: list[bytes]) -> Path:
    """``lines`` as ``folder/corpus.jsonl``, one byte of line :data:`BAD_LINE` replaced by an invalid one."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = lines[BAD_LINE - 1]
    cut = bad.index(b'"text": "') + 20
    rows = [*lines[:BAD_LINE - 1], bad[:cut] + BAD_BYTE + bad[cut + 1:], *lines[BAD_LINE:]]
    path = folder / "corpus.jsonl"
    path.write_bytes(b"".join(rows))
    return path


def curation_args(source: Path, fmt: str, *extra: str) -> list[str]:
    return ["preset=smoke", "sources.journal=null", "sources.leaflets=null", "sources.e3c_raw=null",
            f"sources.bad.path={source}", f"sources.bad.format={fmt}", *extra]


# --------------------------------------------------------------------------- invalid UTF-8: curation


def test_a_jsonl_source_with_one_invalid_byte_is_refused_at_launch_naming_file_and_line(tmp_path, capsys,
                                                                                          french_lines):
    path = corrupted_jsonl(tmp_path / "src", french_lines)
    err = refused(capsys, CurationRunConfig, CURATION, plan_curation, tmp_path / "run",
                  *curation_args(path.parent, "jsonl"))
    assert f"'sources.bad.path': {path}:{BAD_LINE}: invalid UTF-8 (byte 0xff" in err
    assert "sources.bad.on_bad_document=skip" in err


def test_a_text_source_with_an_invalid_byte_is_refused_naming_file_and_line(tmp_path, capsys):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("Le patient présente une fièvre.\n", encoding="utf-8")
    (folder / "b.txt").write_bytes("Première ligne.\nDeuxième ligne ".encode() + BAD_BYTE + b".\n")
    err = refused(capsys, CurationRunConfig, CURATION, plan_curation, tmp_path / "run",
                  *curation_args(folder, "text"))
    assert f"'sources.bad.path': {folder / 'b.txt'}:2: invalid UTF-8" in err


def read_source(path: Path, fmt: str, on_bad_document: str):
    from mcbio.data.curation.readers import build_reader

    reader = build_reader("bad", SourceConfig(path=str(path), format=fmt, on_bad_document=on_bad_document))
    return reader, list(reader.run())


def test_in_the_job_the_reader_fails_on_the_bad_line_instead_of_stopping_the_file(tmp_path, french_lines):
    """The launch scan passed (the file changed since, or the scan was skipped): the rank still fails, naming it."""
    from mcbio.data.curation.readers import BadDocument

    path = corrupted_jsonl(tmp_path, french_lines)
    with pytest.raises(BadDocument, match=rf"{path}:{BAD_LINE}: invalid UTF-8 \(byte 0xff"):
        read_source(path, "jsonl", "fail")


def test_with_skip_only_the_bad_document_is_dropped_and_counted(tmp_path, french_lines):
    from mcbio.data.curation.stats import step_table

    path = corrupted_jsonl(tmp_path, french_lines)
    problems = Problems()
    from mcbio.pipelines.curation import check_source_encoding

    check_source_encoding(problems, "bad", SourceConfig(path=str(path), format="jsonl", on_bad_document="skip"))
    assert not problems.items  # skip sources are not refused at launch
    reader, docs = read_source(path, "jsonl", "skip")
    assert len(docs) == DOCUMENTS - 1
    assert docs[-1].text == json.loads(french_lines[-1])["text"]  # read to the end of the file
    row = step_table({"name": str(reader), "stats": {k: v.total for k, v in reader.stats.stats.items()}})
    assert row["dropped"] == {"invalid_utf8": 1}


def test_an_invalid_json_line_fails_the_rank_naming_file_and_line(tmp_path, french_lines):
    """datatrove's JsonlReader logs a warning and goes on without the line."""
    from mcbio.data.curation.readers import BadDocument

    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"".join([*french_lines[:3], b'{"text": "coup\xc3\xa9\n', *french_lines[3:6]]))
    with pytest.raises(BadDocument, match=rf"{path}:4: invalid JSON"):
        read_source(path, "jsonl", "fail")
    _, docs = read_source(path, "jsonl", "skip")
    assert len(docs) == 6


# --------------------------------------------------------------------------- invalid UTF-8: pretraining corpus


def test_a_pretraining_corpus_with_an_invalid_byte_names_file_and_line(tmp_path, french_lines):
    jsonl = corrupted_jsonl(tmp_path / "jsonl", french_lines)
    with pytest.raises(CorpusError, match=rf"^{jsonl}:{BAD_LINE}: invalid UTF-8 \(byte 0xff at byte offset \d+\)$"):
        list(iter_documents(jsonl))
    txt = tmp_path / "txt" / "note.txt"
    txt.parent.mkdir()
    txt.write_bytes(b"Ligne un.\nLigne deux.\nLigne " + BAD_BYTE + b"trois.\n")
    with pytest.raises(CorpusError, match=rf"^{txt}:3: invalid UTF-8 \(byte 0xff at byte offset 28\)$"):
        list(iter_documents(txt.parent))
    problems = Problems()
    check_utf8_corpus(problems, "data.corpus", str(tmp_path))
    assert problems.items == [f"'data.corpus': {jsonl}:{BAD_LINE}: invalid UTF-8 (byte 0xff at byte offset "
                              f"{find_invalid_utf8(jsonl).offset})"]


def test_the_scan_finds_a_character_cut_by_a_block_end_and_a_truncated_last_one(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "SCAN_BLOCK", 3)
    path = tmp_path / "a.txt"
    path.write_bytes("é\nàéè\nü".encode())  # characters of 2 bytes straddle every 3-byte block
    assert find_invalid_utf8(path) is None
    path.write_bytes("é\nàé".encode() + b"\xc3")  # ends inside a character
    assert (found := find_invalid_utf8(path)) and (found.line, found.offset, found.byte) == (2, 7, 0xC3)
    gz = tmp_path / "b.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "\xe9"}\n'))
    assert find_invalid_utf8(gz).line == 2


# --------------------------------------------------------------------------- fine-tuning sizes


@pytest.mark.parametrize("override, key, rule", [
    ("finetune.batch_size=-4", "finetune.batch_size", ">= 1"),
    ("finetune.batch_size=0", "finetune.batch_size", ">= 1"),
    ("finetune.epochs=0", "finetune.epochs", ">= 1"),
    ("finetune.lr=0", "finetune.lr", "> 0"),
    ("finetune.max_train_examples=0", "finetune.max_train_examples", "null (no cap) or >= 1"),
    ("finetune.eval_batch_size=0", "finetune.eval_batch_size", ">= 1"),
    ("finetune.hp_search.batch_size=[8,0]", "finetune.hp_search.batch_size[1]", ">= 1"),
    ("task_finetune={mini_ner: {epochs: 0}}", "task_finetune.mini_ner.epochs", ">= 1"),
])
def test_fine_tuning_sizes_out_of_range_are_refused_at_launch(tmp_path, capsys, tiny_hf_dir, override, key, rule):
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", "tasks=[mini_ner]",
                  f"results_dir={tmp_path / 'results'}", override)
    assert f"'{key}' must be {rule}" in err


def test_a_pretraining_runs_fine_tuning_sizes_are_refused_too(tmp_path, capsys):
    err = refused(capsys, PretrainRunConfig, PRETRAIN, plan_pretraining, tmp_path / "run", "preset=smoke",
                  "evaluation.finetune.epochs=0", f"evaluation.results_dir={tmp_path / 'results'}")
    assert "'evaluation.finetune.epochs' must be >= 1 (got 0)" in err


def test_a_direct_fine_tuning_call_checks_its_sizes_too(tiny_hf_dir):
    from mcbio.config.loader import ConfigError
    from mcbio.evaluate.classify import finetune_classifier

    with pytest.raises(ConfigError, match=r"'finetune.batch_size' must be >= 1 \(got 0\)"):
        finetune_classifier(str(tiny_hf_dir), {}, 0, FinetuneConfig(batch_size=0), multi_label=False)


# --------------------------------------------------------------------------- output folders


def test_an_unwritable_results_dir_is_refused_at_launch(tmp_path, capsys, tiny_hf_dir):
    """A path under a regular file: unwritable even for root (chmod does not stop root)."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", "tasks=[mini_ner]",
                  f"results_dir={blocker / 'results'}")
    assert f"'results_dir': {blocker / 'results'} is not a folder ({blocker} is a file)" in err


def test_an_unwritable_out_dir_is_refused_for_evaluation_and_curation(tmp_path, capsys, tiny_hf_dir, shared_data):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    run = blocker / "run"
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, run, "preset=smoke",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", "tasks=[mini_ner]",
                  f"results_dir={tmp_path / 'results'}")
    assert f"'out_dir': {run} is not a folder ({blocker} is a file)" in err
    err = refused(capsys, CurationRunConfig, CURATION, plan_curation, run, "preset=smoke",
                  f"paths.shared_data={shared_data}")
    assert f"'out_dir': {run} is not a folder ({blocker} is a file)" in err


def test_the_writability_check_leaves_nothing_behind(tmp_path):
    problems = Problems()
    target = tmp_path / "a" / "b"
    check_writable_dir(problems, "out_dir", target)
    check_writable_dir(problems, "results_dir", tmp_path)
    assert problems.items == [] and list(tmp_path.iterdir()) == []


def test_a_pretraining_launch_refuses_a_corpus_with_an_invalid_byte(tmp_path, capsys, french_lines):
    jsonl = corrupted_jsonl(tmp_path / "corpus", french_lines)
    err = refused(capsys, PretrainRunConfig, PRETRAIN, plan_pretraining, tmp_path / "run", "preset=smoke",
                  f"data.corpus={jsonl.parent}", f"evaluation.results_dir={tmp_path / 'results'}")
    assert f"'data.corpus': {jsonl}:{BAD_LINE}: invalid UTF-8 (byte 0xff" in err


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only tmpfs: unwritable even for root, who ignores permission bits."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def test_a_pretraining_launch_refuses_a_read_only_results_dir(tmp_path, capsys, read_only_folder):
    err = refused(capsys, PretrainRunConfig, PRETRAIN, plan_pretraining, tmp_path / "run", "preset=smoke",
                  f"evaluation.results_dir={read_only_folder / 'results'}")
    assert (f"'evaluation.results_dir': cannot write into {read_only_folder / 'results'} "
            f"(its nearest existing folder {read_only_folder}): Read-only file system") in err
