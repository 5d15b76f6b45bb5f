import os
import shutil
import subprocess

import pytest
from scipy import stats as scipy_stats

from mcbio.results.curation_tables import fidelity_shares, fidelity_table, mix_table, upsampling_table
from mcbio.results.latex import booktabs_table, latex_document
from mcbio.results.records import ResultRecord, RunRecord
from mcbio.results.tables import ablation_table, carbon_table, clm_mlm_table, main_table


def rec(model, task, seed, value, primary=True, metric="f1", **extra):
    return ResultRecord(model=model, task=task, seed=seed, metric=metric, value=value, config_hash="h", commit="c",
                        extra={"primary": primary, **extra})


def test_best_per_row_bold_and_decimal_comma():
    text = booktabs_table(["Task", "a", "b"], [("t1", [0.5, 0.25]), ("t2", [(1.0, 0.5), 2.0])], "cap", "tab:x",
                          decimals=2, decimal_comma=True)
    assert r"t1 & \textbf{0{,}50} & 0{,}25 \\" in text
    assert r"t2 & 1{,}00 {\scriptsize $\pm$ 0{,}50} & \textbf{2{,}00} \\" in text
    assert r"\toprule" in text and r"\bottomrule" in text


def test_ablation_table_mean_over_seeds_and_average():
    records = [rec("g.none", "t1", 1, 0.50), rec("g.none", "t1", 2, 0.70), rec("g.none", "t2", 1, 0.40),
               rec("g.no_x", "t1", 1, 0.80), rec("g.no_x", "t2", 1, 0.20), rec("g.no_x", "t2", 1, 0.9, primary=False, metric="precision")]
    text = ablation_table(records, "g", ["none", "no_x"], "cap", "tab:g")
    assert r"t1 & 60.0 {\scriptsize $\pm$ 14.1} & \textbf{80.0} \\" in text
    assert r"t2 & \textbf{40.0} & 20.0 \\" in text
    assert r"Average & \textbf{50.0} & \textbf{50.0} \\" in text  # a tie: both bold


def test_main_table_puts_published_beside_reproduced():
    records = [rec("clm", "t1", 1, 0.70), rec("clm", "t2", 1, 0.60), rec("mlm", "t1", 1, 0.65), rec("mlm", "t2", 1, 0.62)]
    reference = [rec("Published-bio", "t1", -1, 0.748), rec("Published-bio", "t2", -1, 0.601)]
    text = main_table(records, reference, ["clm", "mlm"], [], "cap", "tab:main", reference_names={"clm": "Published-bio"})
    assert r"Task & clm & Published-bio (paper) & mlm \\" in text
    assert r"t1 & 70.0 & \textbf{74.8} & 65.0 \\" in text
    assert "Win probability" in text and "Min-Max" in text


def test_clm_mlm_table_reports_scipy_ttest():
    a = {"t1": 0.70, "t2": 0.61, "t3": 0.55}
    b = {"t1": 0.68, "t2": 0.60, "t3": 0.56}
    records = [rec("clm", t, 1, v) for t, v in a.items()] + [rec("mlm", t, 1, v) for t, v in b.items()]
    text = clm_mlm_table(records, [("Base", "clm", "mlm")], "cap", "tab:clm")
    ref = scipy_stats.ttest_rel([100 * a[t] for t in sorted(a)], [100 * b[t] for t in sorted(b)])
    assert f"$p$ = {ref.pvalue:.3f}" in text
    ci = ref.confidence_interval(0.95)
    assert f"CI [{ci.low:.2f}, {ci.high:.2f}]" in text
    assert "2/3 task wins" in text
    assert r"Base: t1 & \textbf{70.0} & 68.0 & 2.0 \\" in text


def test_carbon_table_from_run_records():
    runs = [RunRecord(model="base", config_hash="h", gpu_hours=1000.0, num_gpus=4, wall_s=900000.0, gpu_type="H100", commit="c")]
    text = carbon_table(runs, 700, 1.2, 34, "cap", "tab:carbon")
    assert r"base & 4 & 1000.0 & 840.0 & 28.56 \\" in text


def test_fidelity_shares_both_forms():
    n, shares = fidelity_shares({"scores": [1.0, 0.99, 0.96, 0.85, 0.4]})
    assert n == 5 and shares[0.99] == 0.4 and shares[0.95] == 0.6 and shares[0.80] == 0.8 and shares[0.50] == 0.8
    n2, shares2 = fidelity_shares({"total": 5, "at_least": {"0.99": 2, "0.95": 3, "0.9": 3, "0.8": 4, "0.5": 4}})
    assert (n2, shares2) == (n, shares)
    with pytest.raises(ValueError, match="fidelity"):
        fidelity_shares({"total": 5})


def all_tables() -> list[str]:
    records = [rec("clm", "t_1", 1, 0.7), rec("clm", "t_2", 1, 0.6), rec("mlm", "t_1", 1, 0.65), rec("mlm", "t_2", 1, 0.62)]
    runs = [RunRecord(model="base_clm", config_hash="h", gpu_hours=12.5, num_gpus=4, wall_s=1.0, gpu_type="H100", commit="c")]
    return [
        ablation_table(records, "g", ["x"], "Ablation 10 % & more", "tab:abl", decimal_comma=True),
        main_table(records, [rec("clm", "t_1", -1, 0.7)], [], [], "Main", "tab:main"),
        clm_mlm_table(records, [("Base", "clm", "mlm")], "CLM vs MLM", "tab:clm", decimal_comma=True),
        carbon_table(runs, 700, 1.2, 34, "Carbon", "tab:carbon"),
        fidelity_table({"fidelity": {"scores": [1.0, 0.9], "by_source": {"hal": {"scores": [0.95]}}}}, "Fidelity", "tab:fid"),
        mix_table({"articles": 7e9, "ontobook": 2e9}, "Mix", "tab:mix", planned=True),
        upsampling_table([{"low": 0, "high": 0, "factor": 0}, {"low": 1, "high": 25, "factor": 4.3, "articles": 3, "tokens": 2e6}],
                         "Upsampling", "tab:up"),
    ]


def test_tables_compile_with_pdflatex(tmp_path):
    if not shutil.which("pdflatex"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but pdflatex is missing: apt-get install texlive-latex-base texlive-latex-recommended")
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    (tmp_path / "tables.tex").write_text(latex_document(all_tables()), encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 1000
