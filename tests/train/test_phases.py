"""Phase plans from token budgets, LR schedules, and batch derivation from the cluster shape."""

import math

import pytest

from mcbio.config.loader import ConfigError, load_config
from mcbio.config.schema import PhaseConfig, PretrainRunConfig
from mcbio.config.batching import BatchPlanError, plan_batch
from mcbio.train.phases import phase_at, plan_phases, PhasedLRSchedule

REPO_EXPERIMENTS = ["base_clm_detour", "base_mlm_control", "large_clm_detour", "large_mlm_control"]


def _recipe(tokens_stable=10_000_000_000, tokens_decay=1_000_000_000):
    return {
        "stable": PhaseConfig(objective="clm", mlm_probability=0.0, tokens=tokens_stable, warmup_tokens=100_000_000),
        "decay": PhaseConfig(objective="mlm", mlm_probability=0.15, tokens=tokens_decay, schedule="one_minus_sqrt"),
    }


def test_paper_plan_and_schedule():
    tokens_per_batch = 384 * 8192
    plan = plan_phases(_recipe(), tokens_per_batch)
    assert [p.num_batches for p in plan] == [math.ceil(1e10 / tokens_per_batch), math.ceil(1e9 / tokens_per_batch)] == [3179, 318]
    assert plan[0].warmup_batches == 32 and plan[1].start_batch == 3179
    sched = PhasedLRSchedule(plan)
    assert sched.lr_at(0) == pytest.approx(2e-4 / 32)
    assert sched.lr_at(31) == sched.lr_at(32) == sched.lr_at(3178) == pytest.approx(2e-4)  # constant after warmup
    assert sched.lr_at(3179) == pytest.approx(2e-4)  # the schedule restarts at the decay phase's peak
    mid = 3179 + 317 // 4
    assert sched.lr_at(mid) == pytest.approx(2e-5 + 1.8e-4 * (1 - math.sqrt((317 // 4) / 317)))
    assert sched.lr_at(3179 + 317) == pytest.approx(2e-5)  # 1-sqrt ends at final_lr
    assert sched.lr_at(3179 + 316) == pytest.approx(2.0284e-5, rel=1e-4)  # what the last batch used to get
    assert phase_at(plan, 3178).name == "stable" and phase_at(plan, 3179).name == "decay"


@pytest.mark.parametrize("nodes,gpus,micro,per_device,accum", [(1, 4, 8, 96, 12), (2, 4, 8, 48, 6), (4, 4, 4, 24, 6), (0, 0, 8, 384, 48)])
def test_batch_derivation(nodes, gpus, micro, per_device, accum):
    plan = plan_batch(384, micro, max(1, nodes * gpus))
    assert (plan.per_device, plan.grad_accum, plan.microbatch) == (per_device, accum, micro)
    assert "3,145,728 tokens/step" in plan.describe(8192)


def test_batch_derivation_errors_name_the_keys():
    with pytest.raises(BatchPlanError, match="global_batch_size.*5 ranks"):
        plan_batch(384, 8, 5)
    with pytest.raises(BatchPlanError, match="device_microbatch_size'=7"):
        plan_batch(384, 7, 4)
    with pytest.raises(ConfigError, match="device_microbatch_size"):
        load_config(PretrainRunConfig, "experiments/base_clm_detour/config.yaml", ["train.device_microbatch_size=7"])
    with pytest.raises(ConfigError, match="tasks_per_node"):
        load_config(PretrainRunConfig, "experiments/base_clm_detour/config.yaml", ["resources.tasks_per_node=1"])


@pytest.mark.parametrize("name", REPO_EXPERIMENTS)
def test_experiment_configs_hold_the_paper_numbers(name):
    cfg = load_config(PretrainRunConfig, f"experiments/{name}/config.yaml")
    large = name.startswith("large")
    m = cfg.model
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.intermediate_size) == ((28, 1024, 16, 2624) if large else (22, 768, 12, 1152))
    assert (m.vocab_size, m.max_position_embeddings, m.local_attention, m.global_attn_every_n_layers) == (32768, 8192, 128, 3)
    assert (m.global_rope_theta, m.local_rope_theta) == (160000.0, 10000.0)
    t = cfg.train
    assert (t.global_batch_size, cfg.data.seq_len, t.seed, t.data_seed, t.precision) == (384, 8192, 17, 42, "amp_bf16")
    assert (t.optimizer.betas, t.optimizer.eps, t.optimizer.weight_decay) == ([0.9, 0.98], 1e-6, 1e-5)
    assert cfg.data.max_split_padding == 0  # the paper packs without padding
    assert (m.attn_implementation, m.flash_attention_kernel, m.document_masking) == ("flash_attention_2", "flash_attn", True)
    stable, decay = t.phases["stable"], t.phases["decay"]
    assert stable.tokens == (50e9 if large else 10e9) and decay.tokens == (5e9 if large else 1e9)
    assert (stable.schedule, stable.lr, stable.warmup_tokens) == ("constant", 2e-4, 100_000_000)
    assert (decay.objective, decay.mlm_probability, decay.schedule, decay.lr, decay.final_lr) == ("mlm", 0.15, "one_minus_sqrt", 2e-4, 2e-5)
    assert (stable.objective, stable.mlm_probability) == (("clm", 0.0) if "clm" in name else ("mlm", 0.30))


@pytest.mark.parametrize("size", ["base", "large"])
def test_detour_and_control_differ_only_in_the_stable_phase(size):
    from mcbio.config.loader import to_container

    a = to_container(load_config(PretrainRunConfig, f"experiments/{size}_clm_detour/config.yaml"))
    b = to_container(load_config(PretrainRunConfig, f"experiments/{size}_mlm_control/config.yaml"))
    for cfg in (a, b):
        cfg.pop("name"), cfg["tracking"].pop("tags"), cfg["train"]["phases"].pop("stable")
    assert a == b


def test_config_loading_never_imports_training_code():
    """Loading and checking a paper config imports neither torch nor Composer nor mcbio.train."""
    import subprocess
    import sys

    code = ("import sys; from mcbio.config import PretrainRunConfig, load_config; "
            "load_config(PretrainRunConfig, 'experiments/base_clm_detour/config.yaml', ['train.device_microbatch_size=4']); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'composer', 'transformers') or m.startswith('mcbio.train')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_optimizer_lr_key_is_gone_from_every_config():
    with pytest.raises(ConfigError, match="train.optimizer.lr"):
        load_config(PretrainRunConfig, "experiments/base_clm_detour/config.yaml", ["train.optimizer.lr=1e-3"])
    for name in REPO_EXPERIMENTS:
        load_config(PretrainRunConfig, f"experiments/{name}/config.yaml", ["preset=smoke"])  # no stale key anywhere
