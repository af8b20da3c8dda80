import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def load(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and "id" in cell and isinstance(cell["source"], list)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "commit notebooks without outputs"
    return nb


def code_of(nb):
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_there_are_tutorials():
    """One tutorial per source workflow (../shared/seeds: GEO loading, NB-VAE study, limma-voom walkthrough,
    classroom homework)."""
    assert [p.name for p in NOTEBOOKS] == [
        "classroom_ttest.ipynb",
        "gse60450_loading.ipynb",
        "gse60450_walkthrough.ipynb",
        "nbvae_generative_de.ipynb",
    ]
    toc = (TUTORIALS.parent / "docs" / "index.md").read_text()
    assert all(f"tutorials/{p.stem}" in toc for p in NOTEBOOKS), "every tutorial is in the docs' table of contents"


def run_notebook(name, monkeypatch, tmp_path):
    """Execute a tutorial's code cells in order (from tutorials/, as the docs build does); return its namespace."""
    nb = load(TUTORIALS / name)
    monkeypatch.chdir(TUTORIALS)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # files a tutorial saves go to a temporary folder
    tempfile.tempdir = None
    before = sorted(p.name for p in TUTORIALS.iterdir())
    namespace: dict = {}
    try:
        exec(compile(code_of(nb), name, "exec"), namespace)
    finally:
        tempfile.tempdir = None
    assert sorted(p.name for p in TUTORIALS.iterdir()) == before, "a tutorial leaves no file beside it"
    return namespace


def test_classroom_tutorial_runs(monkeypatch, tmp_path):
    ns = run_notebook("classroom_ttest.ipynb", monkeypatch, tmp_path)
    adata = ns["adata"]
    # the homework's data (seed 44), its shifted genes and the answers the text states
    assert adata.X[0, 0] == pytest.approx(2.703283, abs=5e-7) and len(ns["shifted"]) == 10
    assert ns["answer_key"].read_text().splitlines() == ["gene", *ns["shifted"]]
    assert len(adata.uns["filter_missing"]["summary"]) == 1000
    assert adata.uns["student"]["method"] == "ttest_student" and adata.uns["welch"]["method"] == "ttest_welch"
    assert ns["top10"]["is_shifted"].all()
    rates = ns["rates"]
    assert (rates["FNR"] == 0).all() and (rates["TP"] == 10).all()
    assert rates.loc["student", "FP"] == 60 and rates.loc["student", "n_called"] == 70
    # shift_size = 0 over 20 seeds: every call false, FPR near 0.05 (20 x 1000 null tests: sd of the mean 0.0015)
    null = ns["null_rates"]
    assert len(null) == 20 and (null["FDR"] == 1).all() and null["TPR"].isna().all()
    assert abs(null["FPR"].mean() - 0.05) < 0.006


def test_gse60450_loading_tutorial_runs(shared_data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("GENDEX_DATA_DIR", str(shared_data_dir / "data" / "gse60450"))
    ns = run_notebook("gse60450_loading.ipynb", monkeypatch, tmp_path)
    adata, back = ns["adata"], ns["back"]
    assert adata.shape == (12, 27179) and list(adata.obs["name"][:2]) == ["MCL1-DG", "MCL1-DH"]
    assert (adata.obs["celltype"] == "basal").sum() == 6 and adata.obs["library_size"].min() > 2e7
    assert np.array_equal(back.layers["counts"], adata.layers["counts"]) and ns["out"].parent == tmp_path
    assert sorted(p.name for p in ns["out"].iterdir()) == ["counts_matrix.tsv", "gse60450.h5ad", "samples.tsv"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_committed_without_outputs(path):
    nb = load(path)
    compile(code_of(nb), str(path), "exec")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_calls_exist(path):
    """Every ``gdx.<namespace>.<name>`` a notebook uses exists (the NB-VAE notebook is too slow to run in tests:
    GSE60450 training takes minutes on 2 cores, so this catches API drift there)."""
    import gendex as gdx

    calls = set(re.findall(r"\bgdx\.(\w+)\.(\w+)", code_of(load(path))))
    assert calls
    missing = [f"gdx.{ns}.{name}" for ns, name in sorted(calls) if not hasattr(getattr(gdx, ns, None), name)]
    assert not missing


def test_gse60450_walkthrough_runs(shared_data_dir, monkeypatch):
    nb = load(TUTORIALS / "gse60450_walkthrough.ipynb")
    monkeypatch.chdir(TUTORIALS)
    monkeypatch.setenv("GENDEX_DATA_DIR", str(shared_data_dir / "data" / "gse60450"))
    monkeypatch.setenv("GENDEX_SHARED_DIR", str(shared_data_dir))
    namespace: dict = {}
    exec(compile(code_of(nb), "gse60450_walkthrough", "exec"), namespace)
    adata = namespace["adata"]
    assert adata.shape == (12, 14453)
    assert {"X_mds", "X_pca"} <= set(adata.obsm) and "size_factors" in adata.obs
    assert {"deseq2", "deseq2_lactate_vs_virgin", "deseq2_lrt", "limma_voom", "limma_celltype"} <= set(adata.varm)
    assert adata.uns["deseq2"]["contrast"] == ["celltype", "luminal", "basal"]
    assert adata.uns["compare_deseq2_vs_limma_voom"]["summary"]["pearson"] > 0.98
    # the limma-voom steps 6-14 on ~celltype agree with R's limma (filterByExpr, TMM) to the digits R printed
    ref = pd.read_csv(shared_data_dir / "reference" / "gse60450" / "limma_voom_variants.csv")
    ref = ref[(ref["filter"] == "filterByExpr_celltype") & (ref["norm"] == "TMM") & ~ref["keep.lib.sizes"]].iloc[0]
    rec = adata.uns["limma_celltype"]
    assert rec["s2_prior"] == pytest.approx(ref["s2.prior"], rel=1e-6)
    assert rec["df_prior"] == pytest.approx(ref["df.prior"], rel=1e-6)
    summary = namespace["gdx"].get.de_summary(adata, "limma_celltype").iloc[0]
    assert (summary["up"], summary["down"]) == (ref["n_adjP_lt_0.05_up"], ref["n_adjP_lt_0.05_down"])
    # the biology the tutorial's text states
    hallmark = namespace["gdx"].get.enrich_results(adata, "hallmark_deseq2").sort_values("score")
    assert hallmark["source"].iloc[0] == "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"
    assert "HALLMARK_OXIDATIVE_PHOSPHORYLATION" in set(hallmark["source"].iloc[-5:])
    assert adata.uns["hallmark_compare"]["summary"]["spearman"] > 0.8
