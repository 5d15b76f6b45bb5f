"""Config loading: defaults <- profile <- experiment YAML <- preset <- command line; errors name keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mcbio.config import ConfigError, PretrainRunConfig, load_config
from mcbio.config.loader import config_hash

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "experiments" / "base_clm_detour" / "config.yaml"


def test_experiment_yaml_carries_the_paper_recipe():
    cfg = load_config(PretrainRunConfig, BASE)
    stable, decay = cfg.train.phases["stable"], cfg.train.phases["decay"]
    assert list(cfg.train.phases) == ["stable", "decay"]  # YAML order is phase order
    assert (stable.objective, stable.tokens, stable.schedule, stable.lr) == ("clm", 10_000_000_000, "constant", 2e-4)
    assert stable.warmup_tokens == 100_000_000
    assert (decay.objective, decay.mlm_probability, decay.tokens) == ("mlm", 0.15, 1_000_000_000)
    assert (decay.schedule, decay.lr, decay.final_lr) == ("one_minus_sqrt", 2e-4, 2e-5)
    opt = cfg.train.optimizer
    assert (opt.betas, opt.eps, opt.weight_decay) == ([0.9, 0.98], 1e-6, 1e-5)
    assert (cfg.train.global_batch_size, cfg.data.seq_len) == (384, 8192)
    assert (cfg.train.seed, cfg.train.data_seed) == (17, 42)
    m = cfg.model
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.vocab_size) == (22, 768, 12, 32768)
    assert (m.global_rope_theta, m.local_rope_theta, m.local_attention, m.global_attn_every_n_layers) == (160000.0, 10000.0, 128, 3)
    # The Jean Zay profile fills resources before the experiment file.
    assert (cfg.resources.gpus_per_node, cfg.resources.tasks_per_node, cfg.resources.cpus_per_task) == (4, 4, 24)


def test_command_line_overrides_win_over_preset_and_file():
    cfg = load_config(PretrainRunConfig, BASE, ["preset=smoke", "train.phases.stable.tokens=4096", "data.seq_len=64"])
    assert cfg.preset == "smoke"
    assert cfg.model.hidden_size == 64  # from the preset
    assert cfg.train.phases["stable"].tokens == 4096  # command line beats preset
    assert cfg.data.seq_len == 64
    # The preset scales budgets but keeps the experiment's objectives.
    assert cfg.train.phases["stable"].objective == "clm"
    assert cfg.resources.profile == "local" and cfg.resources.gpus_per_node == 0


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.optimzer.lr=1", "unknown config key 'train.optimzer'"),
        ("trian.seed=1", "unknown config key 'trian'"),
        ("train.phases.stable.objectiv=mlm", "unknown config key 'train.phases.stable.objectiv'"),
        ("train.global_batch_size=big", "invalid value for 'train.global_batch_size'"),
        ("model.attn_implementation=flash", "'model.attn_implementation'"),
        ("train.phases.stable.mlm_probability=0.3", "must be 0.0 for a clm phase"),
        ("resources.profile=nowhere", "unknown cluster profile 'nowhere'"),
        ("preset=nope", "unknown preset 'nope'"),
        ("justakey", "not of the form key.sub=value"),
    ],
)
def test_bad_overrides_fail_with_the_key_path(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        load_config(PretrainRunConfig, BASE, [override])


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        load_config(PretrainRunConfig, BASE, ["train.optimzer.lr=1"])
    assert "optimizer" in str(info.value) and "global_batch_size" in str(info.value)


def test_error_in_a_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("name: x\nmodel:\n  hiden_size: 12\n")
    with pytest.raises(ConfigError, match=rf"{bad}.*'model.hiden_size'"):
        load_config(PretrainRunConfig, bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse YAML"):
        load_config(PretrainRunConfig, bad)


def test_config_hash_ignores_placement_but_not_recipe():
    a = load_config(PretrainRunConfig, BASE)
    b = load_config(PretrainRunConfig, BASE, ["out_dir=/elsewhere", "cluster=local", "tracking.wandb=false"])
    c = load_config(PretrainRunConfig, BASE, ["train.phases.decay.mlm_probability=0.3"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)


def test_dry_run_prints_resolved_yaml_and_runs_nothing(tmp_path, shared_data):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(BASE.parent / "launch.py"), "dry_run=true", f"out_dir={out}",
         f"paths.shared_data={shared_data}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["train"]["phases"]["stable"]["objective"] == "clm"
    assert printed["train"]["phases"]["stable"]["tokens"] == 10_000_000_000
    assert printed["train"]["phases"]["decay"]["final_lr"] == 2e-5
    assert printed["model"]["num_hidden_layers"] == 22
    assert "#   pretrain/base_clm_detour: pending" in proc.stdout
    assert not out.exists()


def test_launcher_reports_config_errors_with_exit_code_2():
    proc = subprocess.run(
        [sys.executable, str(BASE.parent / "launch.py"), "train.lr=1"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "unknown config key 'train.lr'" in proc.stderr
