import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx
from gendex import cli

FIGURES = ["library_sizes.png", "density_filter.png", "mds.png", "pca.png"]
TABLES = ["qc_metrics.csv", "size_factors.csv"]


def links(report):
    return re.findall(r"\]\(([^)]+)\)", report.read_text())


def test_demo_on_simulated_data(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--n-genes", "300", "--n-samples", "6", "--seed", "3"]) == 0
    report = out / "report.md"
    for name in [*FIGURES, *TABLES, "results.h5ad", "report.md"]:
        assert (out / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every figure and table is linked from the report, and every link resolves
    linked = links(report)
    assert set(FIGURES + TABLES + ["results.h5ad"]) <= set(linked)
    assert all((out / link).exists() for link in linked)
    text = report.read_text()
    assert "6 samples x 300 genes" in text and "seed 3" in text and "`~condition`" in text
    # the tables hold what the public API computed
    sf = pd.read_csv(out / "size_factors.csv", index_col=0)
    expected = gdx.datasets.simulate_counts(n_samples=6, n_genes=300, seed=3)
    gdx.pp.filter_by_expr(expected, group="condition")
    gdx.pp.size_factors(expected)
    np.testing.assert_allclose(sf["size_factors"], expected.obs["size_factors"])
    qc = pd.read_csv(out / "qc_metrics.csv", index_col=0)
    assert list(qc.columns) == ["library_size", "n_genes_detected", "condition"]
    result = ad.read_h5ad(out / "results.h5ad")
    assert {"X_mds", "X_pca"} <= set(result.obsm) and "filter_by_expr" in result.uns
    assert result.n_vars == expected.n_vars
    # progress on stderr, one line per step
    err = capsys.readouterr().err
    assert "[1/7] Data ... done" in err and "[7/7] Saving results ... done" in err


def test_demo_on_user_files(tmp_path):
    sim = gdx.datasets.simulate_counts(n_samples=6, n_genes=200, seed=1)
    counts = pd.DataFrame(sim.X.T, index=sim.var_names, columns=sim.obs_names)
    counts.index.name = "gene"
    counts.to_csv(tmp_path / "counts.tsv", sep="\t")
    sheet = pd.DataFrame(
        {"treatment": ["ctrl", "ctrl", "ctrl", "drug", "drug", "drug"], "batch": ["b1", "b2"] * 3},
        index=pd.Index(sim.obs_names, name="sample"),
    )
    sheet.to_csv(tmp_path / "samples.csv")
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--counts", str(tmp_path / "counts.tsv")]
    argv += ["--samples", str(tmp_path / "samples.csv"), "--design", "~batch + treatment"]
    assert cli.main(argv) == 0
    text = (out / "report.md").read_text()
    assert "counts.tsv" in text and "`~batch + treatment`" in text and "group='treatment'" in text
    qc = pd.read_csv(out / "qc_metrics.csv", index_col=0)
    assert list(qc["treatment"]) == list(sheet["treatment"])


def test_demo_on_gse60450_copy(tmp_path, shared_data_dir):
    src = shared_data_dir / "data" / "gse60450" / "counts_matrix.tsv"
    lines = src.read_text().splitlines()
    (tmp_path / "counts_matrix.tsv").write_text("\n".join(lines[:3001]) + "\n")  # 3,000 genes keep it quick
    out = tmp_path / "out"
    assert cli.main(["demo", "--out", str(out), "--gse60450", str(tmp_path)]) == 0
    text = (out / "report.md").read_text()
    assert "GSE60450" in text and "12 samples x 3,000 genes" in text and "group='celltype'" in text
    qc = pd.read_csv(out / "qc_metrics.csv", index_col=0)
    assert list(qc.columns) == ["library_size", "n_genes_detected", "celltype", "group"]


def test_adding_a_step_is_a_few_lines(tmp_path, monkeypatch):
    def step_top_genes(demo):
        var = demo.adata.var.sort_values("total_counts", ascending=False).head(5)
        demo.table("top_genes", "Most counted genes", var[["total_counts"]])
        demo.note(f"Top gene: {var.index[0]}.")

    monkeypatch.setattr(cli, "STEPS", [*cli.STEPS, cli.Step("Top genes", step_top_genes)])
    out = tmp_path / "out"
    assert cli.main(["demo", "--out", str(out), "--n-genes", "200", "--n-samples", "4"]) == 0
    text = (out / "report.md").read_text()
    assert "## Top genes" in text and "(top_genes.csv)" in text and "Top gene: gene_" in text
    assert text.index("## PCA") < text.index("## Top genes") < text.index("## Results")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"gendex {gdx.__version__}"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["demo", "--counts", "c.tsv"], "--counts needs --samples and --design"),
        (["demo", "--samples", "s.tsv"], "--samples needs --counts"),
        (["demo", "--counts", "c.tsv", "--gse60450"], "not allowed with argument"),
        ([], "required"),
    ],
)
def test_usage_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_bad_input_is_reported_without_traceback(tmp_path, capsys):
    sim = gdx.datasets.simulate_counts(n_samples=4, n_genes=50, seed=1)
    pd.DataFrame(sim.X.T, index=sim.var_names, columns=sim.obs_names).to_csv(tmp_path / "counts.tsv", sep="\t")
    pd.DataFrame({"cond": list("aabb")}, index=pd.Index(sim.obs_names[:3].tolist() + ["x"], name="s")).to_csv(
        tmp_path / "samples.tsv", sep="\t"
    )
    argv = ["demo", "--out", str(tmp_path / "o"), "--counts", str(tmp_path / "counts.tsv")]
    argv += ["--samples", str(tmp_path / "samples.tsv"), "--design", "~cond"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "gendex demo: error: the sample sheet does not cover 1 sample(s)" in err and "sample_03" in err
    assert "Traceback" not in err
    # an unknown design column
    argv[-1] = "~genotype"
    pd.DataFrame({"cond": list("aabb")}, index=pd.Index(sim.obs_names, name="s")).to_csv(
        tmp_path / "samples.tsv", sep="\t"
    )
    assert cli.main(argv) == 1
    assert "'genotype'" in capsys.readouterr().err
