"""The paper's tables regenerated from reference records, with this repository's columns beside them."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from mcbio.config.loader import load_config
from mcbio.config.report import ReportRunConfig
from mcbio.pipelines.report import fidelity_examples, generate_report
from mcbio.results.paper import BASE, BASE_CONTROL, LARGE, LARGE_CONTROL, reference_records, stale_reference
from mcbio.results.paper_tables import clm_mlm_paper_table, main_paper_table, signed
from mcbio.results.records import ResultRecord, ResultStore, RunRecord, read_records
from mcbio.results.stats import paired_ttest

REPO = Path(__file__).resolve().parents[2]
REPORT_YAML = REPO / "experiments" / "report" / "config.yaml"
COMMITTED = REPO / "results" / "reference"
PAPER_TASKS = ["diamed", "fracco_30", "fracco_100", "cantemist", "distemist", "meddialog_fr", "quaero_emea",
               "quaero_medline"]
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def committed_reference() -> list[ResultRecord]:
    return read_records(COMMITTED)


def rec(model, task, seed, value, metric="f1", **extra):
    return ResultRecord(model=model, task=task, seed=seed, metric=metric, value=value, config_hash="h", commit="c",
                        extra={"primary": True, **extra})


def report(store: Path, *overrides: str, reference: Path = COMMITTED) -> dict:
    (store / "reference").mkdir(parents=True, exist_ok=True)
    for f in reference.glob("*.jsonl"):
        shutil.copy(f, store / "reference" / f.name)
    cfg = load_config(ReportRunConfig, REPORT_YAML, [f"results_dir={store}", "tracking.wandb=false", *overrides])
    return generate_report(cfg)


def published(model: str) -> dict[str, float]:
    return {r.task: 100 * r.value for r in committed_reference() if r.model == model and r.metric == "f1"
            and r.extra.get("table") in ("3", "4")}


# --------------------------------------------------------------------------- the statistics the paper states


def test_paired_ttest_over_the_papers_table4_matches_scipy_and_the_text():
    for clm, mlm, gap, t, p_max, ci in ((BASE, BASE_CONTROL, 2.75, 3.58, 0.01, (0.9, 4.6)),
                                         (LARGE, LARGE_CONTROL, 1.2, None, 0.05, (0.1, 2.3))):
        a, b = published(clm), published(mlm)
        assert sorted(a) == sorted(b) == sorted(PAPER_TASKS)
        cmp = paired_ttest(a, b, 0.95)
        ref = scipy_stats.ttest_rel([a[k] for k in PAPER_TASKS], [b[k] for k in PAPER_TASKS])
        interval = ref.confidence_interval(0.95)
        assert cmp.n_tasks == 8
        assert cmp.mean_diff == pytest.approx(gap, abs=1e-9)
        assert cmp.t_statistic == pytest.approx(float(ref.statistic)) and cmp.p_value == pytest.approx(float(ref.pvalue))
        assert (cmp.ci_low, cmp.ci_high) == pytest.approx((interval.low, interval.high))
        assert cmp.p_value < p_max
        assert (round(cmp.ci_low, 1), round(cmp.ci_high, 1)) == ci
        if t is not None:
            assert round(cmp.t_statistic, 2) == t
    assert paired_ttest(published(BASE), published(BASE_CONTROL)).wins == 8  # the detour wins every task


def test_table4_prints_the_gap_ci_and_p_value():
    text = clm_mlm_paper_table(committed_reference(), [], [("Base", "x", "y", BASE, BASE_CONTROL)], PAPER_TASKS,
                               "cap", "tab:t4")
    assert r"Base (paper): mean gap +2.75 pp, 95\,\% CI [+0.93, +4.57], paired $t(7)$ = 3.58, $p$ = 0.009 ($p < 0.01$)" in text
    assert r"Base: CANTEMIST & \textbf{71.0} & 64.9 & +6.1 \\" in text
    assert r"Base: Average & \textbf{61.6} & 58.9 & +2.8 \\" in text


# --------------------------------------------------------------------------- reference records


def test_reference_records_are_generated_from_the_paper_csvs(paper_dir):
    """The committed results/reference/*.jsonl are exactly what the generator writes from ../shared/paper."""
    assert stale_reference(paper_dir, COMMITTED) == []
    generated = reference_records(paper_dir)
    assert set(generated) == {p.stem for p in paper_dir.glob("*.csv")}
    for records in generated.values():
        assert all(r.seed == -1 and r.config_hash == "published" and r.extra["source"] for r in records)
    t3 = generated["table3_main"]
    assert len(t3) == 6 * 8 and {r.task for r in t3} == set(PAPER_TASKS)
    assert next(r for r in t3 if r.model == "DrBERT" and r.task == "cantemist").value == pytest.approx(0.379)
    assert not list(COMMITTED.glob("*model_card*"))  # the model-card records are replaced


def test_reference_generation_names_a_bad_cell(tmp_path, paper_dir):
    for f in paper_dir.glob("*.csv"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "table3_main.csv").read_text(encoding="utf-8")
    (tmp_path / "table3_main.csv").write_text(text.replace("67.4", "67.4x", 1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"table3_main\.csv:2: '67.4x' is not a number"):
        reference_records(tmp_path)
    (tmp_path / "table3_main.csv").write_text(text.replace("67.4", "67,4", 1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"table3_main\.csv:2: not as many fields as the header"):
        reference_records(tmp_path)
    (tmp_path / "table3_main.csv").write_text(text, encoding="utf-8")
    t4 = (tmp_path / "table4_clm_vs_mlm.csv").read_text(encoding="utf-8")
    (tmp_path / "table4_clm_vs_mlm.csv").write_text(t4.replace("DiaMed,67.4", "DiaMed,67.5"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"table4_clm_vs_mlm\.csv:2: base_clm_detour = 67.5 differs from Table 3"):
        reference_records(tmp_path)


# --------------------------------------------------------------------------- the generated tables


def _numbers(text: str) -> list[str]:
    return NUMBER.findall(text.replace("{,}", "."))


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def test_every_number_of_the_paper_tables_appears_in_the_generated_tables(tmp_path, paper_dir):
    from mcbio.results.paper import write_reference

    write_reference(paper_dir, tmp_path / "fresh")
    report(tmp_path / "results", reference=tmp_path / "fresh")
    tables = tmp_path / "results" / "tables"
    missing = []
    for csv_file in sorted(paper_dir.glob("table*.csv")):
        tex = tables / f"{csv_file.stem}.tex"
        assert tex.is_file(), f"no generated table for {csv_file.name}"
        tokens = _numbers(tex.read_text(encoding="utf-8"))
        with open(csv_file, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                for column, cell in row.items():
                    value = cell.strip().lstrip("~")
                    if not NUMBER.fullmatch(value):
                        continue  # names, hardware, "excluded", ">=99%"
                    if not any(float(t) == float(value) and _decimals(t) >= _decimals(value) for t in tokens):
                        missing.append(f"{csv_file.name}: {row.get(next(iter(row)))} / {column} = {cell}")
    assert not missing, "\n".join(missing)


def committed_results(sub: str) -> list[Path]:
    """The files of ``results/<sub>`` that are committed (smoke runs write there too and are ignored)."""
    folder = REPO / "results" / sub
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "--", f"results/{sub}"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        return sorted(REPO / f for f in out)
    except (OSError, subprocess.SubprocessError):
        return sorted(f for f in folder.glob("*.json*") if not f.name.split(".")[0].endswith("-smoke"))


def test_committed_tables_are_the_report_of_the_committed_records(tmp_path):
    """results/tables and results/figures are up to date: the report of the committed reference,
    records, runs, curation statistics (the laptop study's among them) and measured Table 8 gives the same bytes."""
    store = tmp_path / "results"
    for sub in ("records", "runs", "curation", "fidelity"):
        (store / sub).mkdir(parents=True)
        for f in committed_results(sub):
            shutil.copy(f, store / sub / f.name)
    report(store)
    generated = sorted((store / "tables").glob("*.tex")) + sorted((store / "figures").glob("gain_*"))
    assert generated
    for path in generated:
        committed = REPO / "results" / path.parent.name / path.name
        assert committed.is_file(), f"results/{path.parent.name}/{path.name} is not committed"
        assert committed.read_bytes() == path.read_bytes(), f"results/{path.parent.name}/{path.name} is stale"


def test_this_repository_columns_sit_beside_the_published_ones(tmp_path, tiny_hf_dir):
    store = ResultStore(tmp_path / "results")
    recs = []
    for seed in (42, 43):
        for k, task in enumerate(PAPER_TASKS[:3]):
            recs += [rec("base_clm_detour", task, seed, 0.60 + 0.01 * k + 0.002 * (seed - 42)),
                     rec("base_mlm_control", task, seed, 0.55 + 0.011 * k)]
        recs.append(rec("camembert", "quaero_emea", seed, 0.69))
    for cell, value in (("none", 0.60), ("no_drug_information", 0.62)):
        recs += [rec(f"content_types.{cell}", t, 42, value, cell=cell) for t in ("diamed", "fracco_30", "quaero_emea")]
    store.add(recs, "main")
    store.add_run(RunRecord(model="base_clm_detour", config_hash="h", gpu_hours=16.0, num_gpus=4, wall_s=14400.0,
                            gpu_type="H100", commit="c"), "main")
    curation = tmp_path / "curation_stats.json"
    curation.write_text(json.dumps({"fidelity": {"scores": [1.0, 0.995, 0.97, 0.6]}}), encoding="utf-8")
    # A study's curation statistics in the store: their LLM steps are rows of the carbon table.
    (tmp_path / "results" / "curation").mkdir(parents=True)
    (tmp_path / "results" / "curation" / "st.json").write_text(json.dumps({"llm": {
        "llm_annotate": {"backend": "vllm", "model": "m", "generated_tokens": 2000, "seconds": 3000.0,
                         "engine_start_s": 600.0, "cpu_hours": 2.0, "gpu_hours": 0.0},
        "llm_extract": {"backend": "vllm", "model": "m", "generated_tokens": 9000, "seconds": 3600.0,
                        "engine_start_s": 0.0, "cpu_hours": 8.0, "gpu_hours": 1.0}}}))
    summary = report(tmp_path / "results", f"curation_stats={curation}", "lengths.tasks=[mini_ner]",
                     f"lengths.tokenizers={{tiny: {tiny_hf_dir}}}")
    tables = tmp_path / "results" / "tables"
    t3 = (tables / "table3_main.tex").read_text(encoding="utf-8")
    assert (r"ModernCamemBERT-bio-base & base\_clm\_detour (this repository) & ModernCamemBERT-bio-large"
            in t3)
    assert r"CamemBERT & camembert (this repository) & DrBERT" in t3
    assert r"DiaMed & CLS & \textbf{67.4} & 60.1 {\scriptsize $\pm$ 0.1} & 64.8" in t3
    t4 = (tables / "table4_clm_vs_mlm.tex").read_text(encoding="utf-8")
    assert (r"Base: DiaMed & \textbf{67.4} & 63.4 & +4.0 & 60.1 {\scriptsize $\pm$ 0.1} & 55.0 {\scriptsize $\pm$ 0.0} "
            r"& +5.1 \\") in t4
    assert r"Base (this repository, base\_clm\_detour vs base\_mlm\_control, 3 tasks): mean gap +5.00 pp" in t4
    assert r"Large: DiaMed & \textbf{64.8} & 61.2 & +3.6 & -- & -- & -- \\" in t4
    t1 = (tables / "table1a_content_types.tex").read_text(encoding="utf-8")
    assert r"drug\_information & 64.35 & +0.67 & 62.00 & +2.00 \\" in t1
    t5 = (tables / "table5_carbon.tex").read_text(encoding="utf-8")
    assert r"base\_clm\_detour (this repository) & 4.0 & 4xH100 & 16.0 & 13.4 & 0.46 & this repository \\" in t5
    # 1 GPU-h x 700 W x 1.2 = 0.84 kWh, x 34 g/kWh = 0.029 kg; the CPU step shows its CPU-hours.
    assert (r"st llm\_extract: LLM m on vllm, 9000 tokens (this repository) & 1.00 & GPU & 1.00 & 0.84 & 0.029 & "
            r"this repository \\") in t5
    assert r"st llm\_annotate: LLM m on vllm, 2000 tokens (this repository) & 1.00 & CPU, 2.00 CPU-h &" in t5
    t6 = (tables / "table6_lengths.tex").read_text(encoding="utf-8")
    assert re.search(r"mini\\_ner & this repository \(tiny\) & \d+ &", t6)
    t8 = (tables / "table8_fidelity.tex").read_text(encoding="utf-8")
    assert r"$\geq$ 99\,\% & 84.1 & 50.0 \\" in t8 and "this repository (4 passages)" in t8
    figs = {Path(f).name for f in summary["figures"]}
    assert {"figure2_per_task_gain.png", "figure2_per_task_gain.pdf"} <= figs


def test_decimal_comma_gives_the_papers_french_typography(tmp_path):
    report(tmp_path / "results", "decimal_comma=true")
    tables = tmp_path / "results" / "tables"
    t3 = (tables / "table3_main.tex").read_text(encoding="utf-8")
    assert r"DiaMed & CLS & \textbf{67{,}4} & 64{,}8" in t3 and r"Average &  & 61{,}6" in t3
    t4 = (tables / "table4_clm_vs_mlm.tex").read_text(encoding="utf-8")
    assert r"mean gap +2{,}75 pp" in t4 and r"($p < 0{,}01$)" in t4
    t6 = (tables / "table6_lengths.tex").read_text(encoding="utf-8")
    assert r"$\sim$1050" in t6 and "46{,}1" in t6
    assert not _numbers_with_dot(tables / "table1a_content_types.tex")


def _numbers_with_dot(path: Path) -> list[str]:
    body = path.read_text(encoding="utf-8").split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    return re.findall(r"\d+\.\d+", body)


def test_signed_deltas():
    assert signed(0.67, 2, False) == "+0.67" and signed(-0.13, 2, False) == "-0.13"
    assert signed(0.0, 2, False) == "0.00" and signed(-0.001, 2, False) == "0.00" and signed(2.75, 2, True) == "+2{,}75"


def test_main_table_without_repository_records_is_the_papers():
    text = main_paper_table(committed_reference(), [], PAPER_TASKS, ["DrBERT"], {}, "cap", "tab:m")
    assert r"Task & Type & DrBERT \\" in text and r"Average &  & 50.1 \\" in text


# --------------------------------------------------------------------------- Table 6 on the data at hand


@pytest.mark.shared_data
def test_table6_counts_quaero_test_documents(tmp_path, shared_data, tiny_hf_dir):
    from mcbio.results.lengths import task_documents

    assert len(task_documents("quaero_emea", "test", str(shared_data))) == 15
    assert len(task_documents("quaero_medline", "test", str(shared_data))) == 833
    report(tmp_path / "results", f"paths.shared_data={shared_data}", "lengths.tasks=[quaero_emea,quaero_medline]",
           f"lengths.tokenizers={{tiny: {tiny_hf_dir}}}")
    t6 = (tmp_path / "results" / "tables" / "table6_lengths.tex").read_text(encoding="utf-8")
    emea = t6[t6.index("EMEA (NER) & paper"):]
    assert re.match(r"EMEA \(NER\) & paper & 15 & 1062 .*\\\\\n & this repository \(tiny\) & 15 & ", emea)
    assert re.search(r"Medline \(NER\) & paper & 833 .*\\\\\n & this repository \(tiny\) & 833 & ", t6)


# --------------------------------------------------------------------------- Table 8's measure on appendix E


def test_fidelity_measure_on_the_appendix_e_examples(paper_dir):
    from mcbio.data.curation.fidelity import character_overlap

    scores = dict(fidelity_examples(paper_dir))
    assert scores["verbatim"] == 1.0  # identical paragraph: 100 %
    ocr = json.loads((paper_dir / "fidelity_examples.json").read_text(encoding="utf-8"))[0]
    assert scores["ocr_correction"] == character_overlap(ocr["extracted"], ocr["source"])
    assert scores["ocr_correction"] == pytest.approx(0.9156, abs=1e-4)  # what the measure gives (OCR fixes lower it)


# --------------------------------------------------------------------------- pdflatex


@pytest.mark.parametrize("decimal_comma", [False, True])
def test_generated_tables_compile_with_pdflatex(tmp_path, tiny_hf_dir, decimal_comma):
    if not shutil.which("pdflatex"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but pdflatex is missing: apt-get install texlive-latex-base texlive-latex-recommended")
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    store = ResultStore(tmp_path / "results")
    store.add([rec("base_clm_detour", t, 42, 0.6 + 0.01 * i) for i, t in enumerate(PAPER_TASKS)] +
              [rec("base_mlm_control", t, 42, 0.58 + 0.012 * i) for i, t in enumerate(PAPER_TASKS)], "main")
    report(tmp_path / "results", f"decimal_comma={str(decimal_comma).lower()}", "lengths.tasks=[mini_ner]",
           f"lengths.tokenizers={{tiny: {tiny_hf_dir}}}")
    folder = tmp_path / "results" / "tables"
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all_tables.tex"], cwd=folder,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (folder / "all_tables.pdf").stat().st_size > 1000
