import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx
from gendex import cli

QC_FIGURES = ["library_sizes.png", "density_filter.png", "mds.png", "pca.png"]
QC_TABLES = ["qc_metrics.csv", "size_factors.csv"]
DE_FIGURES = [
    "deseq2_volcano.png",
    "deseq2_md.png",
    "deseq2_pvalues.png",
    "deseq2_heatmap.png",
    "limma_voom_trend.png",
    "limma_voom_md.png",
    "limma_voom_pvalues.png",
    "compare_deseq2_vs_limma_voom.png",
]
DE_TABLES = ["deseq2_results.csv", "limma_voom_results.csv"]
NBVAE_FIGURES = [
    "nbvae_training.png",
    "nbvae_latent.png",
    "compare_deseq2_vs_nbvae_de.png",
    "na_genes.png",
    "latent_path_genes.png",
]
NBVAE_TABLES = ["nbvae_de_results.csv"]
TRUTH_FIGURES = ["roc.png", "fdr_curve.png"]
TRUTH_TABLES = ["evaluation.csv"]
ENRICH_FIGURES = ["enrich_ulm_deseq2.png", "enrich_ulm_nbvae_de.png", "compare_enrichment.png"]
ENRICH_TABLES = ["enrich_ulm_deseq2.csv", "enrich_ulm_nbvae_de.csv"]
FIGURES = QC_FIGURES + DE_FIGURES + NBVAE_FIGURES + TRUTH_FIGURES
TABLES = QC_TABLES + DE_TABLES + NBVAE_TABLES + TRUTH_TABLES
FAST = ["--epochs", "3"]  # a few NB-VAE epochs keep the tests quick


def links(report):
    return re.findall(r"\]\(([^)]+)\)", report.read_text())


def write_gene_sets(sim, tmp_path):
    """Gene symbols ``SYM<i>`` for the simulated genes and a GMT of symbols: the true up and down genes, and noise."""
    symbols = pd.DataFrame({"gene": sim.var_names, "symbol": [f"SYM{i}" for i in range(sim.n_vars)]})
    symbols.to_csv(tmp_path / "symbols.tsv", sep="\t", index=False)
    sym = symbols.set_index("gene")["symbol"]
    up = sym[sim.var["is_de"] & (sim.var["true_log2fc"] > 0)].head(15)
    down = sym[sim.var["is_de"] & (sim.var["true_log2fc"] < 0)].head(15)
    rng = np.random.default_rng(0)
    sets = {"TRUE_UP": up, "TRUE_DOWN": down}
    sets |= {f"RANDOM_{i}": sym.iloc[rng.choice(sim.n_vars, 15, replace=False)] for i in range(4)}
    lines = ["\t".join([name, "na", *genes]) for name, genes in sets.items()]
    (tmp_path / "sets.gmt").write_text("\n".join(lines) + "\n")
    return tmp_path / "sets.gmt", tmp_path / "symbols.tsv"


@pytest.mark.slow  # trains the NB-VAE (a few epochs); ~15 s of it is importing scvi-tools
def test_demo_on_simulated_data(tmp_path, capsys):
    out = tmp_path / "demo"
    expected = gdx.datasets.simulate_counts(n_samples=6, n_genes=300, random_state=3)
    gmt, symbols = write_gene_sets(expected, tmp_path)
    argv = ["demo", "--out", str(out), "--n-genes", "300", "--n-samples", "6", "--seed", "3", *FAST]
    argv += ["--gene-sets", str(gmt), "--gene-symbols", str(symbols)]
    assert cli.main(argv) == 0
    report = out / "report.md"
    figures, tables = FIGURES + ENRICH_FIGURES, TABLES + ENRICH_TABLES
    for name in [*figures, *tables, "results.h5ad", "report.md"]:
        assert (out / name).stat().st_size > 0, name
    for name in figures:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # every figure and table is linked from the report, and every link resolves
    linked = links(report)
    assert set(figures + tables + ["results.h5ad"]) <= set(linked)
    assert all((out / link).exists() for link in linked)
    assert {p.name for p in out.iterdir()} <= {*linked, "report.md"}, "every file written is linked"
    text = report.read_text()
    assert "6 samples x 300 genes" in text and "seed 3" in text and "`~condition`" in text
    assert "B vs A in `condition`" in text
    for section in ["Summary", "DESeq2", "limma-voom", "DESeq2 vs limma-voom", "NB-VAE", "Latent path"]:
        assert f"## {section}\n" in text, section
    assert text.index("## Summary") < text.index("## Data") < text.index("## DESeq2\n") < text.index("## Results")
    assert "3 training epochs" in text
    # the tables hold what the public API computed
    sf = pd.read_csv(out / "size_factors.csv", index_col=0)
    gdx.pp.filter_by_expr(expected, group="condition")
    gdx.pp.size_factors(expected)
    np.testing.assert_allclose(sf["size_factors"], expected.obs["size_factors"])
    qc = pd.read_csv(out / "qc_metrics.csv", index_col=0)
    assert list(qc.columns) == ["label", "library_size", "n_genes_detected", "condition"]
    gdx.tl.deseq2(expected, design="~condition", contrast=["condition", "B", "A"])
    deseq2 = pd.read_csv(out / "deseq2_results.csv", index_col=0, keep_default_na=False, na_values=[""])
    assert list(deseq2.index) == list(expected.var_names) and deseq2["symbol"].iloc[0] == "SYM0"
    np.testing.assert_allclose(deseq2["log2FoldChange"], expected.varm["deseq2"]["log2FoldChange"])
    np.testing.assert_allclose(deseq2["padj"], expected.varm["deseq2"]["padj"])
    n_sig = int((deseq2["padj"] < 0.05).sum())
    assert f"{n_sig:,} of {expected.n_vars:,} genes at padj < 0.05" in text
    # the summary lists the findings; the comparisons' Pearson r is the stored one
    result = ad.read_h5ad(out / "results.h5ad")
    summary = text[text.index("## Summary") : text.index("## Data")]
    for key in ["compare_deseq2_vs_limma_voom", "compare_deseq2_vs_nbvae_de"]:
        assert f"Pearson r = {result.uns[key]['summary']['pearson']:.3f}" in summary
    # evaluation against the known truth: one row per method, as tl.evaluate_de computes it
    evaluation = pd.read_csv(out / "evaluation.csv", index_col=0)
    assert list(evaluation.index) == ["DESeq2", "limma-voom", "NB-VAE"]
    truth = expected.var["is_de"].to_numpy()
    called = (deseq2["padj"] < 0.05).to_numpy()
    assert evaluation.loc["DESeq2", "TP"] == (called & truth).sum()
    assert "| DESeq2 | " in text and "TPR" in summary
    # generative DE has the contract's columns
    nbvae = pd.read_csv(out / "nbvae_de_results.csv", index_col=0)
    assert {"log2FoldChange", "lfcSE", "lfc_lower", "lfc_upper", "qvalue", "is_de"} <= set(nbvae.columns)
    # enrichment by symbol: the true up set scores up, the true down set down
    for key in ["deseq2", "nbvae_de"]:
        enrich = pd.read_csv(out / f"enrich_ulm_{key}.csv").set_index("source")
        assert enrich.loc["TRUE_UP", "score"] > 0 > enrich.loc["TRUE_DOWN", "score"], key
    assert "matched by gene symbol" in text and "Spearman" in summary
    assert {"X_mds", "X_pca", "X_nbvae"} <= set(result.obsm) and "filter_by_expr" in result.uns
    assert {"deseq2", "limma_voom", "nbvae_de"} <= set(result.varm) and "latent_path" in result.uns
    path = result.uns["latent_path"]["params"]
    assert (path["start_label"], path["end_label"]) == ("A", "B") and "silhouette by `condition`" in summary
    assert result.n_vars == expected.n_vars and result.var["symbol"].iloc[0] == "SYM0"
    # progress on stderr, one line per step; no progress bar when stderr is not a terminal
    err = capsys.readouterr().err
    n = len(cli.STEPS) + 1
    assert "[1/" in err and f"[1/{n}] Data ... done" in err and f"[{n}/{n}] Saving results ... done" in err
    own = [line for line in err.splitlines() if re.match(r"\[\d+/\d+\] |report: ", line)]
    assert "\r" not in err and len(own) == n + 2, err
    # the truth counts say they count the genes kept by the filter
    n_true = int(gdx.datasets.simulate_counts(n_samples=6, n_genes=300, random_state=3).var["is_de"].sum())
    assert f"{n_true:,} genes truly DE, {int(expected.var['is_de'].sum()):,} of them kept by the filter" in text
    assert (out / "evaluation.csv").read_text().startswith("method,key,call,threshold,")


def test_demo_on_user_files(tmp_path):
    # 8 samples: with 6 and three coefficients DESeq2's prior-variance step (1-3 residual df) takes ~25 s
    sim = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=1)
    counts = pd.DataFrame(sim.X.T, index=sim.var_names, columns=sim.obs_names)
    counts.index.name = "gene"
    counts.to_csv(tmp_path / "counts.tsv", sep="\t")
    sheet = pd.DataFrame(
        {"treatment": ["ctrl"] * 4 + ["drug"] * 4, "batch": ["b1", "b2"] * 4},
        index=pd.Index(sim.obs_names, name="sample"),
    )
    sheet.to_csv(tmp_path / "samples.csv")
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--counts", str(tmp_path / "counts.tsv")]
    argv += ["--samples", str(tmp_path / "samples.csv"), "--design", "~batch + treatment", "--no-nbvae"]
    assert cli.main(argv) == 0
    text = (out / "report.md").read_text()
    assert "counts.tsv" in text and "`~batch + treatment`" in text and "group='treatment'" in text
    assert "drug vs ctrl in `treatment`" in text
    assert "No known truth" in text and "enrichment skipped" in text and not (out / "evaluation.csv").exists()
    assert "NB-VAE skipped (`--no-nbvae`)" in text and "generative DE skipped" in text
    assert not (out / "nbvae_de_results.csv").exists() and (out / "deseq2_results.csv").exists()
    linked = links(out / "report.md")
    assert all((out / link).exists() for link in linked)
    qc = pd.read_csv(out / "qc_metrics.csv", index_col=0)
    assert list(qc["treatment"]) == list(sheet["treatment"])


def test_demo_on_gse60450_copy(tmp_path, shared_data_dir):
    src = shared_data_dir / "data" / "gse60450" / "counts_matrix.tsv"
    lines = src.read_text().splitlines()
    (tmp_path / "counts_matrix.tsv").write_text("\n".join(lines[:3001]) + "\n")  # 3,000 genes keep it quick
    out = tmp_path / "out"
    assert cli.main(["demo", "--out", str(out), "--gse60450", str(tmp_path), "--no-nbvae"]) == 0
    text = (out / "report.md").read_text()
    assert "GSE60450" in text and "12 samples x 3,000 genes" in text and "group='celltype'" in text
    assert "`~celltype + status`" in text and "luminal vs basal in `celltype`" in text
    qc = pd.read_csv(out / "qc_metrics.csv", index_col=0)
    assert list(qc.columns) == ["label", "library_size", "n_genes_detected", "celltype", "group"]
    # the figures' short sample names beside the full IDs (MCL1-DG for MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1)
    assert qc.index[0].startswith(qc["label"].iloc[0] + "_") and qc["label"].is_unique
    assert qc["label"].str.match(r"^MCL1-[DL][A-L]$").all()


def test_adding_a_step_is_a_few_lines(tmp_path, monkeypatch):
    def step_top_genes(demo):
        var = demo.adata.var.sort_values("total_counts", ascending=False).head(5)
        demo.table("top_genes", "Most counted genes", var[["total_counts"]])
        demo.note(f"Top gene: {var.index[0]}.")

    monkeypatch.setattr(cli, "STEPS", [*cli.STEPS[:6], cli.Step("Top genes", step_top_genes)])  # read by main
    out = tmp_path / "out"
    assert cli.main(["demo", "--out", str(out), "--n-genes", "200", "--n-samples", "4"]) == 0
    text = (out / "report.md").read_text()
    assert "## Top genes" in text and "(top_genes.csv)" in text and "Top gene: gene_" in text
    assert text.index("## PCA") < text.index("## Top genes") < text.index("## Results")


def test_options_parse(tmp_path):
    argv = ["demo", "--contrast", "status", "lactate", "virgin", "--gene-sets", "h.gmt", "--gene-symbols", "s.tsv"]
    args = cli.build_parser()[0].parse_args([*argv, "--epochs", "50", "--no-nbvae", "--gse60450"])
    assert args.contrast == ["status", "lactate", "virgin"] and args.epochs == 50 and args.gse60450 == ""
    assert args.no_nbvae
    assert args.gene_sets.name == "h.gmt" and args.gene_symbols.name == "s.tsv"
    defaults = cli.build_parser()[0].parse_args(["demo"])
    assert defaults.contrast is None and defaults.epochs is None and defaults.gene_sets is None
    assert not defaults.no_nbvae
    assert defaults.out == "gendex-demo" and defaults.gse60450 is None


def test_unknown_contrast_level_is_reported(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path / "o"), "--n-genes", "100", "--n-samples", "4", "--contrast", "condition"]
    assert cli.main([*argv, "C", "A"]) == 2
    err = capsys.readouterr().err
    assert "gendex demo: error: --contrast: no level 'C' in `condition`" in err and "Traceback" not in err
    assert "[1/" not in err and not (tmp_path / "o").exists()


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
        (["demo", "--epochs", "0"], "--epochs must be at least 1"),
        (["demo", "--contrast", "condition", "B"], "expected 3 arguments"),
        (["demo", "--epochs", "many"], "invalid int value"),
    ],
)
def test_usage_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_bad_input_is_reported_without_traceback(tmp_path, capsys):
    sim = gdx.datasets.simulate_counts(n_samples=4, n_genes=50, random_state=1)
    pd.DataFrame(sim.X.T, index=sim.var_names, columns=sim.obs_names).to_csv(tmp_path / "counts.tsv", sep="\t")
    pd.DataFrame({"cond": list("aabb")}, index=pd.Index(sim.obs_names[:3].tolist() + ["x"], name="s")).to_csv(
        tmp_path / "samples.tsv", sep="\t"
    )
    argv = ["demo", "--out", str(tmp_path / "o"), "--counts", str(tmp_path / "counts.tsv")]
    argv += ["--samples", str(tmp_path / "samples.tsv"), "--design", "~cond"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "gendex demo: error: --counts/--samples: the sample sheet does not cover 1 sample(s)" in err
    assert "sample_03" in err
    assert "Traceback" not in err
    # an unknown design column
    argv[-1] = "~genotype"
    pd.DataFrame({"cond": list("aabb")}, index=pd.Index(sim.obs_names, name="s")).to_csv(
        tmp_path / "samples.tsv", sep="\t"
    )
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--design '~genotype'" in err and "'genotype'" in err and "--group" not in err


def test_usage_errors_print_the_demo_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--counts", "c.tsv"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gendex demo ") and "gendex demo: error: --counts needs --samples and --design" in err


def test_help_is_plain_text():
    parser, demo = cli.build_parser()
    for text in (parser.format_help(), demo.format_help()):
        assert "``" not in text and ":func:" not in text and ":mod:" not in text
    assert "generative and classical differential expression" in parser.format_help()


@pytest.fixture
def user_files(tmp_path):
    sim = gdx.datasets.simulate_counts(n_samples=6, n_genes=60, random_state=2)
    counts = pd.DataFrame(sim.X.T, index=pd.Index(sim.var_names, name="gene"), columns=sim.obs_names)
    counts.to_csv(tmp_path / "counts.tsv", sep="\t")
    sheet = pd.DataFrame(
        {"treatment": ["ctrl"] * 3 + ["drug"] * 3, "batch": ["b1", "b2"] * 3, "dose": [0.0, 0.1, 0.2, 1, 2, 3]},
        index=pd.Index(sim.obs_names, name="sample"),
    )
    sheet.to_csv(tmp_path / "samples.csv")
    (tmp_path / "other.gmt").write_text("SET1\tna\tGENE_X\tGENE_Y\n")
    (tmp_path / "bad.gmt").write_text("just one field\n")
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me\n")
    base = ["demo", "--counts", str(tmp_path / "counts.tsv"), "--samples", str(tmp_path / "samples.csv")]
    return tmp_path, base


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--design", "~nonexistent"], r"--design '~nonexistent': .*unknown .*\['nonexistent'\]"),
        (["--design", "~batch +"], r"--design '~batch \+': cannot parse"),
        (["--design", "~treatment", "--group", "genotype"], r"--group 'genotype' is not a column"),
        (["--design", "~treatment", "--group", "batch"], r"groups' column 'batch' is not in the design"),
        (["--design", "~treatment + dose"], r"--design '~treatment \+ dose': its last term 'dose' is numeric"),
        (["--design", "~treatment", "--contrast", "treatment", "drug", "placebo"], r"no level 'placebo'"),
        (["--design", "~treatment", "--contrast", "batch", "b2", "b1"], r"--contrast: the factor 'batch' is not in"),
        (["--design", "~treatment", "--gene-sets", "{tmp}/none.gmt"], r"--gene-sets '.*none.gmt': no such file"),
        (["--design", "~treatment", "--gene-sets", "{tmp}/bad.gmt"], r"--gene-sets '.*bad.gmt': .*not a GMT record"),
        (["--design", "~treatment", "--gene-sets", "{tmp}/other.gmt"], r"none of its 2 genes is measured"),
        (["--design", "~treatment", "--gene-symbols", "{tmp}/none.tsv"], r"--gene-symbols '.*none.tsv': no such"),
        (["--design", "~treatment", "--out", "{tmp}/file.txt"], r"--out '.*file.txt' is an existing file"),
        (["--design", "~treatment", "--out", "{tmp}/busy"], r"--out '.*busy' is a folder with files that are not"),
    ],
)
def test_bad_inputs_fail_before_the_first_step(user_files, capsys, extra, message):
    tmp, base = user_files
    extra = [x.replace("{tmp}", str(tmp)) for x in extra]
    if "--out" not in extra:
        extra += ["--out", str(tmp / "out")]
    before = sorted(p.name for p in tmp.iterdir())
    assert cli.main([*base, *extra, "--no-nbvae"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), err
    assert "Traceback" not in err and "[1/" not in err, "no step may run before the inputs are checked"
    assert sorted(p.name for p in tmp.iterdir()) == before, "nothing written"
    assert (tmp / "busy" / "thesis.tex").read_text() == "keep me\n"


def test_failed_or_interrupted_run_leaves_no_output(tmp_path, monkeypatch, capsys):
    def step_boom(demo):
        demo.table("half", "A table", demo.adata.obs)
        raise ValueError("boom in a step")

    out = tmp_path / "nested" / "out"
    argv = ["demo", "--out", str(out), "--n-genes", "100", "--n-samples", "4"]
    monkeypatch.setattr(cli, "STEPS", [*cli.STEPS[:2], cli.Step("Boom", step_boom)])
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "[3/4] Boom ... failed" in err and "gendex demo: error: boom in a step" in err
    assert list(tmp_path.iterdir()) == [], "no output folder, no partial folder, no created parent"

    # a previous report survives an interrupted rerun, and all its links still resolve
    monkeypatch.setattr(cli, "STEPS", cli.STEPS[:2])
    assert cli.main(argv) == 0
    report = (out / "report.md").read_text()

    def step_interrupt(demo):
        demo.figure("x", "X", gdx.pl.library_sizes(demo.adata))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "STEPS", [*cli.STEPS[:2], cli.Step("Interrupted", step_interrupt)])
    assert cli.main(argv) == 130
    assert (out / "report.md").read_text() == report and not (out / "x.png").exists()
    assert all((out / link).exists() for link in links(out / "report.md"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    # a successful rerun replaces the previous demo's folder
    monkeypatch.setattr(cli, "STEPS", cli.STEPS[:1])
    assert cli.main(argv) == 0
    assert "## Quality control" not in (out / "report.md").read_text() and not (out / "qc_metrics.csv").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
