"""The laptop study (experiments/laptop_study): its config rules, its wiring, the CI-sized study on
Slurm, and a kill-and-relaunch during pretraining and during evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_launcher

EXPERIMENT = REPO / "experiments" / "laptop_study" / "config.yaml"
SMOKE = "laptop_study-smoke"
ARMS = ("clm_detour", "mlm_control")
RANDOM_INIT = "laptop_study-base-smoke-random-init"


def load(*overrides: str):
    from mcbio.config.loader import load_config
    from mcbio.config.study import StudyConfig

    return load_config(StudyConfig, EXPERIMENT, ["preset=smoke", *overrides])


# --------------------------------------------------------------------------- config and plan


@pytest.mark.parametrize("override, key", [
    ("arms.mlm_control.tokens=8192", "arms.mlm_control.tokens"),
    ("arms.clm_detour.lr=1.0e-3", "arms.clm_detour.lr"),
    ("continued.data.shards=/x", "continued.data.shards"),
    ("curation.pack.tokenizer=/x", "curation.pack.tokenizer"),
    ("report.b=mlm_controll", "report.b"),
    ("report.b=clm_detour", "report.b"),
    ("arms.clm_detour.mlm_probability=0.1", "continued.train.phases.stable.mlm_probability"),
    ("curation.mix.shares.articles=0.5", "curation.mix.shares"),
    ("report.power=0.04", "report.power"),
    ("report.confidence=1.5", "report.confidence"),
])
def test_study_rules_are_checked_at_load_naming_the_study_key(override, key):
    from mcbio.config.loader import ConfigError

    with pytest.raises(ConfigError, match=f"'{key}"):
        load(override)


def test_an_ontobook_source_in_the_curation_is_refused():
    from mcbio.config.loader import ConfigError

    with pytest.raises(ConfigError, match="'curation.sources.extra'"):
        load("curation.sources.extra.path=/x", "curation.sources.extra.group=ontobook")


def plan(*overrides: str, out_dir: Path):
    from mcbio.cluster.launcher import LaunchContext
    from mcbio.pipelines.study import plan_study

    return plan_study(load(f"out_dir={out_dir}", f"evaluation.results_dir={out_dir / 'results'}", *overrides),
                      LaunchContext("local", EXPERIMENT))


def test_the_plan_wires_each_step_to_the_outputs_of_the_previous(shared_data, tmp_path):
    p = plan(f"paths.shared_data={shared_data}", out_dir=tmp_path / "study")
    root = tmp_path / "study"
    by_stage = {s.name: s for s in p.stages}
    names = list(by_stage)
    # The curation's own stages (its planner's), between OntoBook and the arms.
    curation_stages = names[3:-4]
    assert names[:3] == ["base-pretrain", "ontobook-shards", "ontobook-merge"]
    assert curation_stages[0] == "curation-passages" and curation_stages[-1] == "curation-stats"
    assert all(n.startswith("curation-") for n in curation_stages) and "curation-mix_pack" in curation_stages
    assert names[-4:] == ["clm_detour-pretrain", "mlm_control-pretrain", "evaluate", "report"]
    # Launch checks passed although none of the wired paths exists yet.
    assert not (root / "base").exists()
    curation = by_stage["curation-passages"].elements[0].cfg.cfg
    assert curation.pack.tokenizer == str(root / "base" / "hf")
    assert curation.sources["ontobook"].path == str(root / "ontobook" / "documents" / "ontobook.jsonl")
    assert curation.decontamination.enabled and curation.decontamination.tasks == ["quaero_medline", "morfitt"]
    assert set(by_stage["curation-passages"].after) == {"base-pretrain", "ontobook-shards", "ontobook-merge"}
    arms = {}
    for arm in ARMS:
        stage = by_stage[f"{arm}-pretrain"]
        assert "base-pretrain" in stage.after and "curation-stats" in stage.after
        arms[arm] = stage.elements[0].cfg
        assert arms[arm].model.init_from == str(root / "base" / "hf")
        assert arms[arm].data.shards == str(root / "curation" / "shards") and arms[arm].data.corpus is None
    # The arms differ in phase 1 only.
    a, b = (arms[arm].train for arm in ARMS)
    assert (a.phases["stable"].objective, b.phases["stable"].objective) == ("clm", "mlm")
    assert a.phases["decay"] == b.phases["decay"] and a.data_seed == b.data_seed
    assert a.phases["stable"].tokens == b.phases["stable"].tokens
    evaluated = by_stage["evaluate"].elements
    models = {e.cfg.model_name for e in evaluated}
    assert models == {f"laptop_study-{m}-smoke" for m in ("base", *ARMS)} | {RANDOM_INIT}
    assert len(evaluated) == 4 * 2 * 1
    assert set(by_stage["evaluate"].after) == {"base-pretrain", "clm_detour-pretrain", "mlm_control-pretrain"}
    # The random-init floor: the base export's architecture and tokenizer, fresh weights, the same
    # tasks, seeds and fine-tuning as the base (only the init differs in what an element computes).
    floor = {(e.cfg.task.name, e.cfg.seed): e.cfg for e in evaluated if e.cfg.model_name == RANDOM_INIT}
    base = {(e.cfg.task.name, e.cfg.seed): e.cfg for e in evaluated if e.cfg.model_name == "laptop_study-base-smoke"}
    assert floor.keys() == base.keys() and len(floor) == 2
    for key, el in floor.items():
        assert (el.model_init, el.model_path) == ("random", str(root / "base" / "hf"))
        assert base[key].model_init == "pretrained" and el.finetune == base[key].finetune
        assert el.settings_hash != base[key].settings_hash
    spec = by_stage["report"].elements[0].cfg.spec
    assert (spec.random_init, spec.base, spec.power) == (RANDOM_INIT, "laptop_study-base-smoke", 0.8)


def test_the_random_init_floor_can_be_left_out(shared_data, tmp_path):
    p = plan(f"paths.shared_data={shared_data}", "report.random_init=false", "report.power=0.9",
             out_dir=tmp_path / "study")
    by_stage = {s.name: s for s in p.stages}
    assert {e.cfg.model_init for e in by_stage["evaluate"].elements} == {"pretrained"}
    assert len(by_stage["evaluate"].elements) == 3 * 2 * 1
    spec = by_stage["report"].elements[0].cfg.spec
    assert spec.random_init == "" and spec.power == 0.9


def test_the_report_element_tables_the_weights_now_in_the_study_folders(tiny_hf_dir, tmp_path, monkeypatch):
    """A step re-run under the same name leaves its earlier weights' records in the store: the study's
    own table keeps the records of the models its folders hold now."""
    from mcbio.config.report import StudyTable
    from mcbio.model.fingerprint import model_fingerprint
    from mcbio.pipelines.study import StudyTableJob, study_table_element
    from mcbio.results.records import ResultRecord, ResultStore

    store = ResultStore(tmp_path / "results")
    models = {"s-a": (str(tiny_hf_dir), "pretrained"), "s-b": (str(tiny_hf_dir), "pretrained"),
              "s-base": (str(tiny_hf_dir), "pretrained"), "s-base-random-init": (str(tiny_hf_dir), "random")}
    value = {"s-a": 0.5, "s-b": 0.4, "s-base": 0.3, "s-base-random-init": 0.1}

    def records(model: str, fingerprint: str, shift: float) -> list[ResultRecord]:
        slope = 0.02 if model == "s-a" else 0.01
        return [ResultRecord(model=model, task=task, seed=seed, metric="f1", config_hash="h", commit="c",
                             value=value[model] + shift + slope * seed + (0.01 if (model, task) == ("s-a", "morfitt") else 0),
                             model_fingerprint=fingerprint, extra={"primary": True})
                for task in ("quaero_medline", "morfitt") for seed in (1, 2)]

    for model, (path, init) in models.items():
        store.add(records(model, model_fingerprint(path, init), 0.0), "s")
    store.add(records("s-a", "f" * 64, 0.3), "s")  # s-a's earlier weights, 30 points better
    stats = tmp_path / "curation_stats.json"
    stats.write_text("{}")
    monkeypatch.setattr("mcbio.results.study_tables.study_overlap_of", lambda *a, **k: "overlap")
    spec = StudyTable(experiment="s", a="s-a", b="s-b", base="s-base", random_init="s-base-random-init",
                      tasks=["quaero_medline", "morfitt"])
    study_table_element(StudyTableJob(spec, str(store.root), str(tmp_path / "tables"), 0.95, False, str(stats), models))
    table = (tmp_path / "tables" / "table4_s.tex").read_text()
    row = next(line for line in table.splitlines() if line.startswith("Medline &"))
    # s-a now on Medline: 50 + (2 + 4) / 2 = 53.0, 11.50 over s-b (41.5) and 41.50 over random init (11.5),
    # 42.50 on MORFITT; its earlier weights would show 83.0, +41.50 and +72.00.
    assert row.split("&")[1].strip().startswith(r"\textbf{53.0") and "+11.50" in row
    assert "Gain over random init" in table and "CLM detour +42.00 pp" in table


def test_a_real_missing_input_still_fails_at_launch(shared_data, tmp_path):
    from mcbio.config.loader import ConfigError

    with pytest.raises(ConfigError, match="'curation.sources.journal.path': .*nope does not exist"):
        plan(f"paths.shared_data={shared_data}", f"curation.sources.journal.path={tmp_path / 'nope'}",
             out_dir=tmp_path / "study")
    with pytest.raises(ConfigError, match="'evaluation.tasks': unknown task 'nope'"):
        plan(f"paths.shared_data={shared_data}", "evaluation.tasks=[nope]", out_dir=tmp_path / "study")
    assert not (tmp_path / "study").exists()


# --------------------------------------------------------------------------- the CI-sized study


def run_records(results: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (results / "runs" / f"{model}.jsonl").read_text().splitlines()]


def check_study_outputs(root: Path, results: Path, seeds: tuple[int, ...] = (42,)) -> None:
    """Each step's output is what the next one read, and the report shows the three models."""
    from mcbio.files import sha256_file

    base_weights = sha256_file(root / "base" / "hf" / "model.safetensors")
    shards_index = sha256_file(root / "curation" / "shards" / "index.json")
    for arm in ARMS:
        (run,) = run_records(results, f"laptop_study-{arm}-smoke")[-1:]
        assert run["extra"]["init_from"]["sha256"] == {"model.safetensors": base_weights}
        assert run["extra"]["shards"] == {"path": str(root / "curation" / "shards"), "index_sha256": shards_index}
        assert set(run["extra"]["tokens_per_phase"]) == {"stable", "decay"}
    stats = json.loads((root / "curation" / "curation_stats.json").read_text())
    assert stats["mix"]["groups"]["ontobook"]["documents"] > 0  # OntoBook's output reached the mix
    assert set(stats["decontamination"]["tasks"]) == {"quaero_medline", "morfitt"}
    records = [json.loads(line) for line in (results / "records" / f"{SMOKE}.jsonl").read_text().splitlines()]
    primary = {(r["model"], r["task"], r["seed"]) for r in records if r["extra"]["primary"]}
    assert primary == {(m, t, seed) for m in (*(f"laptop_study-{m}-smoke" for m in ("base", *ARMS)), RANDOM_INIT)
                       for t in ("quaero_medline", "morfitt") for seed in seeds}
    assert {r["extra"]["init"] for r in records if r["model"] == RANDOM_INIT} == {"random"}
    table = (root / "tables" / f"table4_{SMOKE}.tex").read_text()
    for task_row in (line for line in table.splitlines() if line.startswith(("Medline &", "MORFITT &"))):
        cells = [c.strip() for c in task_row.rstrip("\\ ").split("&")]
        assert all(c != "--" for c in cells[1:6]), task_row  # detour, control, base, random init and the gap
    assert "(task, seed) pairs" in table and "Compute: pretraining base" in table
    assert "Gain over random init" in table and f"fine-tuning {len(primary)} runs" in table
    # The overlap report: the curation's statistics kept in the store, and their table.
    kept = json.loads((results / "curation" / f"{SMOKE}.json").read_text())
    assert kept["decontamination"] == stats["decontamination"]
    overlap = (root / "tables" / f"overlap_{SMOKE}.tex").read_text()
    assert "group ontobook" in overlap and "test split" in overlap


@pytest.mark.slurm
@pytest.mark.slow
def test_the_smoke_study_runs_on_slurm_every_step_feeding_the_next(shared_data, tmp_path):
    out = Path(os.environ.get("MCBIO_SLURM_TMP", tmp_path)) / "study"
    args = ("preset=smoke", "cluster=slurm", "resources.profile=local_slurm", f"out_dir={out}",
            f"evaluation.results_dir={out / 'results'}", f"paths.shared_data={shared_data}")
    proc = run_launcher("laptop_study", *args, timeout=1500)
    assert "evaluate: submitted 8 element(s)" in proc.stdout
    check_study_outputs(out, out / "results")
    again = run_launcher("laptop_study", *args, timeout=300)
    assert "nothing to run, every element is done" in again.stdout


# --------------------------------------------------------------------------- kill and relaunch


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / "laptop_study" / "launch.py"), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 900) -> None:
    """SIGKILL the launcher and its local jobs (one process group) as soon as ``ready()`` holds."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the study ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def primary_records(results: Path) -> list[dict]:
    path = results / "records" / f"{SMOKE}.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["extra"]["primary"]]


@pytest.mark.slow
def test_a_killed_study_relaunched_redoes_only_unfinished_work(shared_data, tmp_path):
    out = tmp_path / "study"
    results = out / "results"
    # Longer arms with frequent checkpoints, so the kill lands inside phase 1 of clm_detour.
    args = ["preset=smoke", f"out_dir={out}", f"evaluation.results_dir={results}", f"paths.shared_data={shared_data}",
            "arms.clm_detour.tokens=98304", "arms.mlm_control.tokens=98304", "continued.train.checkpoint.save_interval=4ba",
            ]
    checkpoints = out / "clm_detour" / "checkpoints"
    first = start(args, tmp_path / "first.log")
    # latest-rank0.pt is linked once a checkpoint is completely written.
    kill_when(first, lambda: (checkpoints / "latest-rank0.pt").exists(), "a clm_detour checkpoint")
    assert not (out / "clm_detour" / "hf" / "mcbio_run.json").exists()

    second = start(args, tmp_path / "second.log")
    kill_when(second, lambda: len(primary_records(results)) >= 2, "two evaluation records")
    before = {(r["model"], r["task"], r["seed"]): r["timestamp"] for r in primary_records(results)}
    assert 2 <= len(before) < 8

    third = subprocess.run([sys.executable, str(REPO / "experiments" / "laptop_study" / "launch.py"), *args],
                           capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    second_log = (tmp_path / "second.log").read_text()
    # The relaunch after the first kill: base, OntoBook and curation were done, clm_detour resumed.
    assert "base-pretrain: 1 element(s): 1 done" in second_log
    assert "curation-stats: 1 element(s): 1 done" in second_log
    (detour,) = run_records(results, "laptop_study-clm_detour-smoke")
    assert detour["extra"]["resumed_at_batch"] >= 4
    assert len(run_records(results, "laptop_study-base-smoke")) == 1
    # The last relaunch ran only the evaluations not recorded before the second kill.
    after = primary_records(results)
    keys = [(r["model"], r["task"], r["seed"]) for r in after]
    assert len(keys) == len(set(keys)) == 8
    assert all(r["timestamp"] == before[k] for r, k in zip(after, keys) if k in before)
    assert f"running {8 - len(before)} element(s) locally" in third.stdout
    check_study_outputs(out, results)
