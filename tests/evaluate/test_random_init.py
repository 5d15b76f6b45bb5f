"""model.init=random: the checkpoint's architecture and tokenizer, fresh weights from the seed."""

from __future__ import annotations

import pytest
import torch

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.heads import TokenClassifier, load_encoder


def test_random_init_keeps_the_architecture_and_draws_new_weights(tiny_hf_dir):
    pretrained = load_encoder(str(tiny_hf_dir))
    rng_before = torch.random.get_rng_state()
    random_42 = load_encoder(str(tiny_hf_dir), "random", seed=42)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG stream is untouched
    assert type(random_42) is type(pretrained)
    assert random_42.config.to_dict() == pretrained.config.to_dict()
    ref, new = pretrained.state_dict(), random_42.state_dict()
    assert ref.keys() == new.keys()
    matrices = [k for k, v in ref.items() if v.dim() >= 2]
    assert matrices and all(ref[k].shape == new[k].shape for k in ref)
    assert all(not torch.equal(ref[k], new[k]) for k in matrices), "a weight matrix was copied from the checkpoint"
    # Reproducible from the seed; another seed draws other weights.
    again, other = load_encoder(str(tiny_hf_dir), "random", seed=42), load_encoder(str(tiny_hf_dir), "random", seed=43)
    assert all(torch.equal(new[k], again.state_dict()[k]) for k in new)
    assert not torch.equal(new[matrices[0]], other.state_dict()[matrices[0]])
    head = TokenClassifier(str(tiny_hf_dir), 3, init="random", seed=42)
    assert torch.equal(head.encoder.state_dict()[matrices[0]], new[matrices[0]])
    with pytest.raises(ValueError, match="choose one of pretrained, random"):
        load_encoder(str(tiny_hf_dir), "scratch")


def test_random_init_fine_tunes_through_the_same_path_without_reading_the_weights(tiny_hf_dir, monkeypatch):
    import mcbio.evaluate.heads as heads
    from mcbio.evaluate.run import evaluate_task

    cfg = FinetuneConfig(epochs=1, lr=5e-3, batch_size=8, max_length=64)
    monkeypatch.setattr(heads.AutoModel, "from_pretrained",
                        lambda *a, **k: pytest.fail("init=random read the checkpoint's weights"))
    res = evaluate_task(str(tiny_hf_dir), "mini_ner", 42, cfg, None, init="random")
    assert res["init"] == "random" and set(res["metrics"]) >= {"strict_f1", "lenient_f1"}
    assert res["sizes"] == {"train": 262, "dev": 60, "test": 60} and res["epochs_run"] >= 1
    monkeypatch.undo()
    pretrained = evaluate_task(str(tiny_hf_dir), "mini_ner", 42, cfg, None)
    assert pretrained["init"] == "pretrained" and pretrained["dev_history"] != res["dev_history"]


def test_eval_model_config_accepts_only_known_init_modes():
    from mcbio.config.evaluation import EvalModelConfig
    from mcbio.config.loader import ConfigError, validate_choices

    validate_choices(EvalModelConfig(path="/m", init="random"))
    with pytest.raises(ConfigError, match="init"):
        validate_choices(EvalModelConfig(path="/m", init="scratch"))
