"""Model fingerprints: weights and tokenizer by content, written at export, checked when read."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from mcbio.model.export import export_hf
from mcbio.model.fingerprint import FINGERPRINT_FILE, model_fingerprint, tokenizer_fingerprint
from tests.conftest import build_tiny_modernbert


def export(tokenizer, folder, seed):
    torch.manual_seed(seed)
    export_hf(build_tiny_modernbert(tokenizer, seed=seed), tokenizer, folder)
    return folder


def test_same_weights_same_fingerprint_other_weights_another(tmp_path, tiny_tokenizer):
    a = model_fingerprint(export(tiny_tokenizer, tmp_path / "a", seed=0))
    recorded = json.loads((tmp_path / "a" / FINGERPRINT_FILE).read_text())
    assert recorded["fingerprints"]["pretrained"] == a and len(a) == 64
    assert set(recorded["files"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
    # Exported again (new files, new times), or copied elsewhere (a clean clone): the same identity.
    assert model_fingerprint(export(tiny_tokenizer, tmp_path / "a", seed=0)) == a
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    assert model_fingerprint(tmp_path / "copy") == a
    other = model_fingerprint(export(tiny_tokenizer, tmp_path / "b", seed=1))
    assert other != a
    # The random-init baseline never reads the weights: its fingerprint ignores them.
    assert model_fingerprint(tmp_path / "b", init="random") == model_fingerprint(tmp_path / "a", init="random")
    assert model_fingerprint(tmp_path / "a", init="random") != a


def test_what_is_not_weights_tokenizer_or_config_content_does_not_count(tmp_path, tiny_tokenizer):
    folder = export(tiny_tokenizer, tmp_path / "m", seed=0)
    before = model_fingerprint(folder)
    (folder / "mcbio_run.json").write_text('{"run": "x", "config_hash": "y"}')
    (folder / "README.md").write_text("notes")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "transformers_version": "9.9.9"}, indent=4))
    assert model_fingerprint(folder) == before
    (folder / "config.json").write_text(json.dumps({**config, "local_attention": 8}))
    assert model_fingerprint(folder) != before  # the architecture the weights are read into
    (folder / "config.json").write_text(json.dumps(config))
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["added_tokens"][0]["content"] = "<pad2>"
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    assert model_fingerprint(folder) != before
    assert tokenizer_fingerprint(folder) != tokenizer_fingerprint(export(tiny_tokenizer, tmp_path / "n", seed=0))


def test_a_weight_file_changed_after_export_is_hashed_again(tmp_path, tiny_tokenizer):
    """"Checked when read": the recorded size/mtime/ctime of each file; a file rewritten in place
    (same size, here the bytes of other weights) no longer matches and is hashed again."""
    folder = export(tiny_tokenizer, tmp_path / "m", seed=0)
    before = model_fingerprint(folder)
    stat = (folder / "model.safetensors").stat()
    other = export(tiny_tokenizer, tmp_path / "other", seed=1)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its old mtime
    assert (folder / "model.safetensors").stat().st_size == stat.st_size
    assert model_fingerprint(folder) != before
    # The record was brought up to date: the next read trusts it.
    files = json.loads((folder / FINGERPRINT_FILE).read_text())["files"]
    assert files["model.safetensors"]["ctime_ns"] == (folder / "model.safetensors").stat().st_ctime_ns


def test_a_model_mcbio_did_not_export_is_fingerprinted_on_the_fly(tmp_path, tiny_tokenizer):
    model = build_tiny_modernbert(tiny_tokenizer, seed=0)
    model.save_pretrained(tmp_path / "plain")
    tiny_tokenizer.save_pretrained(tmp_path / "plain")
    export(tiny_tokenizer, tmp_path / "mcbio", seed=0)
    assert model_fingerprint(tmp_path / "plain") == model_fingerprint(tmp_path / "mcbio")
    assert not (tmp_path / "plain" / FINGERPRINT_FILE).exists()  # nothing written into someone else's folder
    with pytest.raises(FileNotFoundError, match="no weight files"):
        (tmp_path / "plain" / "model.safetensors").unlink()
        model_fingerprint(tmp_path / "plain")
    assert model_fingerprint(tmp_path / "plain", init="random")  # config + tokenizer are enough for it
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        model_fingerprint(tmp_path / "missing")
