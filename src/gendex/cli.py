"""``gendex`` command line: ``gendex demo`` runs the workflow on example or user data and writes a report.

The demo is a thin script over the public API: an ordered list of small step functions (:data:`STEPS`),
each taking the :class:`Demo` state, calling ``gdx.pp``/``gdx.tl``/``gdx.pl`` and recording its figures,
tables and notes for ``report.md``: data and QC, filtering, size factors, MDS/PCA, DESeq2, limma-voom, the NB-VAE
and its generative DE, evaluation against the truth (simulated data) and gene-set enrichment. Adding a step is a
few lines::

    def step_ttest(demo: Demo) -> None:
        factor, test, ref = demo.contrast
        gdx.tl.ttest(demo.adata, groupby=factor, group1=test, group2=ref, layer="log_cpm")
        demo.table("ttest_results", "t-test results", gdx.get.de_results(demo.adata, "ttest"))
        demo.figure("ttest_volcano", "t-test volcano plot", gdx.pl.volcano(demo.adata, "ttest"))


    STEPS.append(Step("t-test", step_ttest))
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


# --- state shared by the steps --------------------------------------------------------------------

#: Significance level of the DE calls in the demo (``padj`` / q-value below it).
ALPHA = 0.05
#: DE results the demo may compute, in report order, with their display names.
DE_METHODS = {"deseq2": "DESeq2", "limma_voom": "limma-voom", "nbvae_de": "NB-VAE"}


@dataclass
class Demo:
    """What the steps share: the options, the AnnData and what goes into the report.

    ``design`` is the design formula, ``group`` the ``obs`` column of the experimental groups (used by
    ``pp.filter_by_expr``), ``color`` the ``obs`` column the sample plots are coloured by and ``contrast`` the
    ``[factor, test, reference]`` every DE method tests. ``model`` is the trained NB-VAE. ``findings`` are the
    one-line results repeated in the report's summary.
    """

    args: argparse.Namespace
    out: Path
    adata: AnnData | None = None
    dataset: str = ""
    design: str = "~condition"
    group: str = "condition"
    color: str = "condition"
    contrast: list[str] = field(default_factory=list)
    unfiltered: AnnData | None = None
    model: Any = None
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def _lines(self) -> list[str]:
        if not self.sections:
            self.sections.append(("Data", []))
        return self.sections[-1][1]

    def note(self, text: str) -> None:
        """Add a paragraph to the report section of the current step."""
        self._lines().append(text)

    def finding(self, text: str) -> None:
        """Add a paragraph to the current section and repeat it in the report's summary."""
        self.note(text)
        self.findings.append(text)

    def figure(self, name: str, title: str, obj: Any) -> Path:
        """Save an Axes or Figure as ``<out>/<name>.png``, close it and link it in the report."""
        import matplotlib.pyplot as plt

        fig = obj if hasattr(obj, "savefig") else obj.figure
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        self._lines().append(f"![{title}]({path.name})")
        return path

    def table(self, name: str, title: str, df: pd.DataFrame) -> Path:
        """Write a DataFrame as ``<out>/<name>.csv`` and link it in the report."""
        path = self.out / f"{name}.csv"
        df.to_csv(path)
        self._lines().append(f"- [{title}]({path.name}) ({len(df):,} rows)")
        return path

    def markdown(self, df: pd.DataFrame, digits: int = 3) -> None:
        """Show a small DataFrame in the report as a Markdown table (index first, floats to ``digits``)."""
        import numbers

        def cell(value: Any) -> str:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return f"{value:,}"
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return f"{value:.{digits}f}"
            return str(value).replace("|", "\\|")

        header = [str(df.index.name or ""), *map(str, df.columns)]
        rows = [[cell(i), *(cell(v) for v in row)] for i, row in zip(df.index, df.itertuples(index=False), strict=True)]
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * df.shape[1]) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        self._lines().append("\n".join(lines))


@dataclass(frozen=True)
class Step:
    """A titled step of the demo; ``run(demo)`` does the work and records figures/tables/notes.

    ``own_line``: the step writes output of its own (e.g. a training progress bar), so its progress line is
    finished before it starts and repeated when it ends.
    """

    title: str
    run: Callable[[Demo], None]
    own_line: bool = False


# --- the steps ------------------------------------------------------------------------------------


def _main_factor(design: str) -> str | None:
    """The last term of a design formula (DESeq2's convention: the variable of interest)."""
    rhs = design.split("~", 1)[-1]
    terms = [t.strip() for t in rhs.split("+") if t.strip() and t.strip() not in ("0", "1", "-1")]
    return terms[-1] if terms else None


def _contrast(adata: AnnData, group: str, requested: Sequence[str] | None) -> list[str]:
    """``--contrast`` as given, else the last level of ``group`` vs its first (DESeq2's default coefficient)."""
    if requested is not None:
        return [str(x) for x in requested]
    col = adata.obs[group]
    levels = list(col.cat.categories) if hasattr(col, "cat") else sorted(col.dropna().astype(str).unique())
    levels = [lev for lev in levels if (col.astype(str) == str(lev)).any()]
    if len(levels) < 2:
        raise ValueError(f"`obs[{group!r}]` has fewer than two groups ({levels}): nothing to compare")
    return [group, str(levels[-1]), str(levels[0])]


def step_load(demo: Demo) -> None:
    """Read the user's table, GSE60450, or simulate counts."""
    import gendex as gdx

    args = demo.args
    if args.counts is not None:
        demo.adata = gdx.io.read_counts(args.counts, sample_sheet=args.samples)
        demo.dataset = f"`{args.counts}` with sample sheet `{args.samples}`"
        demo.design = args.design
        factor = args.group or _main_factor(args.design)
        if factor is None or factor not in demo.adata.obs.columns:
            raise KeyError(
                f"cannot take the groups from the design {args.design!r} (last term {factor!r} is not a column of "
                f"the sample sheet: {list(demo.adata.obs.columns)}); name one with --group"
            )
        demo.group = demo.color = factor
    elif args.gse60450 is not None:
        demo.adata = gdx.datasets.gse60450(args.gse60450 or None)
        demo.dataset = "GSE60450 (Fu et al. 2015): mouse mammary basal and luminal cells, virgin/pregnant/lactating"
        demo.design, demo.group, demo.color = args.design or "~celltype + status", "celltype", "group"
    else:
        demo.adata = gdx.datasets.simulate_counts(
            n_samples=args.n_samples, n_genes=args.n_genes, random_state=args.seed
        )
        demo.dataset = (
            f"simulated negative-binomial counts (`gdx.datasets.simulate_counts`, seed {args.seed}); "
            f"{int(demo.adata.var['is_de'].sum())} genes truly differentially expressed between conditions A and B"
        )
        demo.design = args.design or "~condition"
    if args.group is not None:
        if args.group not in demo.adata.obs.columns:
            raise KeyError(f"--group {args.group!r} is not an `obs` column; available: {list(demo.adata.obs.columns)}")
        demo.group = demo.color = args.group
    demo.contrast = _contrast(demo.adata, demo.group, args.contrast)
    factor, test, ref = demo.contrast
    demo.note(
        f"{demo.adata.n_obs} samples x {demo.adata.n_vars:,} genes: {demo.dataset}. Design `{demo.design}`; "
        f"differential expression of {test} vs {ref} in `{factor}`."
    )
    if args.gene_symbols is not None:
        gdx.pp.add_gene_symbols(demo.adata, table=args.gene_symbols)
        rec = demo.adata.uns["add_gene_symbols"]
        demo.note(
            f"Gene symbols from `{args.gene_symbols}` (`pp.add_gene_symbols`): {rec['n_mapped']:,} genes mapped, "
            f"{rec['n_unmapped']:,} keep their ID."
        )


def step_qc(demo: Demo) -> None:
    """Library sizes and detected genes per sample."""
    import gendex as gdx

    adata = demo.adata
    gdx.pp.qc_metrics(adata)
    cols = ["library_size", "n_genes_detected", *dict.fromkeys([demo.group, demo.color])]
    demo.table("qc_metrics", "QC metrics per sample", adata.obs[cols])
    labels = "name" if "name" in adata.obs.columns else None
    demo.figure("library_sizes", "Library sizes", gdx.pl.library_sizes(adata, color=demo.color, labels=labels))
    lib = adata.obs["library_size"]
    demo.note(f"Library sizes range from {lib.min():,} to {lib.max():,} counts (median {lib.median():,.0f}).")


def step_filter(demo: Demo) -> None:
    """EdgeR's filterByExpr rule; log-CPM densities before and after."""
    import gendex as gdx

    adata = demo.adata
    gdx.pp.log_cpm(adata)
    demo.unfiltered = adata.copy()
    gdx.pp.filter_by_expr(adata, group=demo.group)
    gdx.pp.log_cpm(adata)
    rec = adata.uns["filter_by_expr"]
    demo.figure(
        "density_filter",
        "log-CPM densities before and after filtering",
        gdx.pl.density(adata, before=demo.unfiltered, color=demo.color),
    )
    demo.note(
        f"`pp.filter_by_expr(group={demo.group!r})` kept {rec['n_genes_kept']:,} of {rec['n_genes_before']:,} genes "
        f"(CPM cutoff {rec['cpm_cutoff']:.3g}, in at least {rec['min_sample_size']:g} samples)."
    )


def step_size_factors(demo: Demo) -> None:
    """DESeq2 median-of-ratios size factors."""
    import gendex as gdx

    adata = demo.adata
    gdx.pp.size_factors(adata)
    cols = ["size_factors", "library_size"] + [c for c in ("true_size_factor",) if c in adata.obs.columns]
    demo.table("size_factors", "DESeq2 size factors", adata.obs[cols])
    sf = adata.obs["size_factors"]
    demo.note(f"Size factors range from {sf.min():.3f} to {sf.max():.3f}.")


def step_mds(demo: Demo) -> None:
    """limma-style MDS on the leading log-fold-changes."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.mds(adata, top=500)
    labels = "name" if "name" in adata.obs.columns else adata.n_obs <= 24
    demo.figure("mds", "MDS (leading log-fold-changes)", gdx.pl.mds(adata, color=demo.color, labels=labels))
    ratio = adata.uns["mds"]["variance_ratio"]
    demo.note(f"Dimensions 1 and 2 explain {100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of the variance.")


def step_pca(demo: Demo) -> None:
    """PCA on log-CPM."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.pca(adata)
    demo.figure("pca", "PCA of log-CPM", gdx.pl.pca(adata, color=demo.color))
    ratio = adata.uns["pca"]["variance_ratio"]
    demo.note(f"PC1 and PC2 explain {100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of the variance.")


def _n_called(res: pd.DataFrame) -> tuple[int, int, int]:
    """Genes called at ``padj < ALPHA``: all, up, down."""
    called = res["padj"] < ALPHA
    up = int((called & (res["log2FoldChange"] > 0)).sum())
    down = int((called & (res["log2FoldChange"] < 0)).sum())
    return int(called.sum()), up, down


def _contrast_text(demo: Demo) -> str:
    factor, test, ref = demo.contrast
    return f"{test} vs {ref} in `{factor}`"


def step_deseq2(demo: Demo) -> None:
    """DESeq2 (Wald test of the contrast): table, volcano, MD plot, p-value histogram, heatmap."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.deseq2(adata, demo.design, contrast=demo.contrast, alpha=ALPHA)
    res = gdx.get.de_results(adata, "deseq2")
    demo.table("deseq2_results", "DESeq2 results", res)
    n, up, down = _n_called(res)
    demo.finding(
        f"DESeq2 (`{demo.design}`, {_contrast_text(demo)}): {n:,} of {adata.n_vars:,} genes at padj < {ALPHA} "
        f"({up:,} up, {down:,} down)."
    )
    reasons = res["na_reason"].astype(str).value_counts()
    na = ", ".join(f"{reasons[r]:,} {r.replace('_', ' ')}" for r in reasons.index if r)
    demo.note(f"Genes with an NA adjusted p-value: {na}." if na else "No gene has an NA adjusted p-value.")
    demo.figure("deseq2_volcano", "DESeq2 volcano plot", gdx.pl.volcano(adata, "deseq2", alpha=ALPHA))
    demo.figure("deseq2_md", "DESeq2 MD plot", gdx.pl.md(adata, "deseq2", alpha=ALPHA))
    demo.figure("deseq2_pvalues", "DESeq2 p-value histogram", gdx.pl.pvalue_hist(adata, "deseq2"))
    demo.figure(
        "deseq2_heatmap",
        "Top DESeq2 genes (log-CPM, row z-scores)",
        gdx.pl.heatmap(adata, "deseq2", n_genes=40, groupby=demo.contrast[0]),
    )


def step_limma(demo: Demo) -> None:
    """limma-voom (TMM, voom weights, eBayes): table, mean-variance trend, MD plot, p-value histogram."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.limma_voom(adata, design=demo.design, contrast=demo.contrast)
    res = gdx.get.de_results(adata, "limma_voom")
    demo.table("limma_voom_results", "limma-voom results", res)
    n, up, down = _n_called(res)
    demo.finding(f"limma-voom ({_contrast_text(demo)}): {n:,} genes at adj.P < {ALPHA} ({up:,} up, {down:,} down).")
    rec = adata.uns["limma_voom"]
    demo.note(f"eBayes prior: s2.prior {rec['s2_prior']:.4g}, df.prior {rec['df_prior']:.4g}.")
    demo.figure("limma_voom_trend", "voom mean-variance trend", gdx.pl.voom(adata, "limma_voom"))
    demo.figure("limma_voom_md", "limma-voom MD plot", gdx.pl.md(adata, "limma_voom", alpha=ALPHA))
    demo.figure("limma_voom_pvalues", "limma-voom p-value histogram", gdx.pl.pvalue_hist(adata, "limma_voom"))


def _compare(demo: Demo, key1: str, key2: str) -> dict[str, Any]:
    """``tl.compare_de`` of two results, the scatter of their log2 fold changes and a one-line finding."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.compare_de(adata, key1, key2, alpha=ALPHA)
    key = f"compare_{key1}_vs_{key2}"
    summary = adata.uns[key]["summary"]
    name1, name2 = DE_METHODS[key1], DE_METHODS[key2]
    demo.figure(key, f"log2 fold changes, {name1} vs {name2}", gdx.pl.lfc_scatter(adata, key))
    demo.finding(
        f"{name1} vs {name2}: log2FC Pearson r = {summary['pearson']:.3f} (Spearman {summary['spearman']:.3f}, "
        f"slope {summary['slope']:.2f}) over {summary['n_both_finite']:,} genes; significant in both "
        f"{summary['n_sig_both']:,}, only {name1} {summary['n_sig_only1']:,}, only {name2} "
        f"{summary['n_sig_only2']:,}; call agreement {summary['agreement']:.3f}."
    )
    return summary


def step_compare_classical(demo: Demo) -> None:
    """DESeq2 vs limma-voom log2 fold changes and calls."""
    _compare(demo, "deseq2", "limma_voom")


def step_nbvae(demo: Demo) -> None:
    """Train the NB-VAE on the raw counts (size factors as offsets); training curve and latent space."""
    import logging
    import warnings

    import numpy as np

    import gendex as gdx
    import gendex.model  # imports scvi-tools and Lightning, which set their loggers to INFO on import

    for name in ("lightning.pytorch", "lightning.fabric"):  # keep the progress bar, drop the banner
        logging.getLogger(name).setLevel(logging.WARNING)
    if demo.args.no_nbvae:
        demo.note("NB-VAE skipped (`--no-nbvae`).")
        return
    adata = demo.adata
    kwargs = {} if demo.args.epochs is None else {"max_epochs": demo.args.epochs}
    with warnings.catch_warnings():
        # Lightning's own use of a deprecated torch pytree API, not ours to fix
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
        demo.model = gdx.tl.nbvae(adata, **kwargs)
    history = adata.uns["X_nbvae"]["history"]
    demo.note(
        f"`tl.nbvae`: {adata.obsm['X_nbvae'].shape[1]}-D latent space, {len(history)} training epochs, final "
        f"training ELBO {float(history['elbo_train'].iloc[-1]):.5g}."
    )
    demo.figure("nbvae_training", "NB-VAE training curve", gdx.pl.training_curve(adata, "X_nbvae"))
    demo.figure("nbvae_latent", "NB-VAE latent space", gdx.pl.latent(adata, basis="X_nbvae", color=demo.color))
    factor = demo.contrast[0]
    labels = adata.obs[factor].astype(str).to_numpy()
    sizes = np.unique(labels, return_counts=True)[1]
    if 2 <= sizes.size < adata.n_obs and sizes.min() >= 2:
        from sklearn.metrics import silhouette_score

        score = silhouette_score(adata.obsm["X_nbvae"], labels)
        demo.finding(f"NB-VAE latent space (learnt without labels): silhouette by `{factor}` {score:.2f}.")


def step_generative_de(demo: Demo) -> None:
    """Generative DE from the NB-VAE posterior; DESeq2 vs NB-VAE; the genes DESeq2 leaves NA."""
    import gendex as gdx

    if demo.model is None:
        demo.note("No NB-VAE was trained: generative DE skipped.")
        return
    adata = demo.adata
    factor, test, ref = demo.contrast
    gdx.tl.generative_de(adata, demo.model, groupby=factor, group1=test, group2=ref, fdr_target=ALPHA)
    res = gdx.get.de_results(adata, "nbvae_de")
    demo.table("nbvae_de_results", "NB-VAE generative DE results", res)
    is_de = res["is_de"].astype(bool)
    up, down = int((is_de & (res["log2FoldChange"] > 0)).sum()), int((is_de & (res["log2FoldChange"] < 0)).sum())
    demo.finding(
        f"NB-VAE generative DE ({_contrast_text(demo)}): {int(is_de.sum()):,} genes at q-value <= {ALPHA} "
        f"({up:,} up, {down:,} down)."
    )
    summary = _compare(demo, "deseq2", "nbvae_de")
    n_na = int(summary["n_finite_only2"])
    if n_na:
        demo.note(f"{n_na:,} genes DESeq2 leaves without a call get a generative estimate, with its interval.")
    else:
        demo.note("DESeq2 gives every gene a call here; the plot shows the generative estimates of the tested genes.")
    demo.figure(
        "na_genes",
        "NB-VAE log2FC (and interval width) of the genes DESeq2 tested or left NA",
        gdx.pl.na_genes(adata, "compare_deseq2_vs_nbvae_de"),
    )


def step_latent_path(demo: Demo) -> None:
    """Decoded expression of the top generative DE genes along the latent path from reference to test group."""
    import gendex as gdx

    if demo.model is None:
        demo.note("No NB-VAE was trained: latent path skipped.")
        return
    adata = demo.adata
    factor, test, ref = demo.contrast
    stat = adata.varm["nbvae_de"]["stat"].dropna().sort_values()
    genes = list(dict.fromkeys([*stat.index[::-1][:3], *stat.index[:3]]))
    gdx.tl.latent_path(adata, demo.model, start=(factor, ref), end=(factor, test), genes=genes)
    demo.note(
        f"A straight line in the latent space from the centroid of the {ref} samples to that of the {test} samples "
        "(`tl.latent_path`); the curves are the decoded normalised expression of the three most up- and "
        "down-regulated genes (largest |stat| of the generative DE)."
    )
    demo.figure("latent_path_genes", f"Decoded expression from {ref} to {test}", gdx.pl.latent_genes(adata, logy=True))


def step_evaluate(demo: Demo) -> None:
    """On simulated data: every DE result against the known truth (error rates, ROC, observed FDR)."""
    import pandas as pd

    import gendex as gdx

    adata = demo.adata
    if "is_de" not in adata.var.columns:
        demo.note("No known truth (`var['is_de']`) for this data set: evaluation skipped.")
        return
    keys = [k for k in DE_METHODS if k in adata.varm]
    metrics = pd.concat([gdx.tl.evaluate_de(adata, key=k, alpha=ALPHA) for k in keys])
    metrics.index = pd.Index([DE_METHODS[k] for k in keys], name="method")
    demo.table("evaluation", "Evaluation against the truth", metrics)
    demo.markdown(metrics[["n_called", "TP", "FP", "TPR", "FPR", "FDR", "precision", "AUROC", "AUPRC"]])
    for name, row in metrics.iterrows():
        demo.findings.append(
            f"{name} against the truth at {ALPHA}: TPR {row['TPR']:.3f}, observed FDR {row['FDR']:.3f}, "
            f"AUROC {row['AUROC']:.3f}."
        )
    demo.figure("roc", "ROC curves", gdx.pl.roc(adata, keys))
    demo.figure("fdr_curve", "Observed vs nominal FDR", gdx.pl.fdr_curve(adata, keys))


def step_enrichment(demo: Demo) -> None:
    """Gene-set enrichment (decoupler ULM on the DE statistic) of DESeq2 and the NB-VAE, side by side."""
    import gendex as gdx

    args, adata = demo.args, demo.adata
    if args.gene_sets is None:
        demo.note("No gene sets given (`--gene-sets FILE.gmt`): enrichment skipped.")
        return
    net = gdx.io.read_gmt(args.gene_sets)
    targets = set(net["target"].astype(str))
    n_ids = len(targets & set(adata.var_names.astype(str)))
    n_symbols = len(targets & set(adata.var["symbol"].astype(str))) if "symbol" in adata.var.columns else 0
    symbols = "symbol" if n_symbols > n_ids else None
    demo.note(
        f"{net['source'].nunique():,} gene sets from `{args.gene_sets}`, matched by "
        f"{'gene symbol' if symbols else 'gene ID'} ({max(n_ids, n_symbols):,} of their genes are measured)."
    )
    keys = [k for k in ("deseq2", "nbvae_de") if k in adata.varm]
    for key in keys:
        ekey = f"enrich_ulm_{key}"
        gdx.tl.enrich(adata, key=key, net=net, method="ulm", gene_symbols=symbols, key_added=ekey)
        res = gdx.get.enrich_results(adata, ekey)
        demo.table(ekey, f"ULM enrichment of the {DE_METHODS[key]} statistic", res)
        demo.figure(ekey, f"Top gene sets, {DE_METHODS[key]}", gdx.pl.enrichment(adata, ekey, n_sets=15))
        sig = res[res["padj"] < ALPHA].sort_values("score")
        up = ", ".join(sig["source"][sig["score"] > 0][::-1][:3]) or "none"
        down = ", ".join(sig["source"][sig["score"] < 0][:3]) or "none"
        demo.finding(
            f"{DE_METHODS[key]} enrichment: {len(sig)} of {len(res)} sets at padj < {ALPHA}; top up: {up}; "
            f"top down: {down}."
        )
    if len(keys) == 2:
        gdx.tl.compare_enrichment(adata, "enrich_ulm_deseq2", "enrich_ulm_nbvae_de", key_added="compare_enrichment")
        demo.figure(
            "compare_enrichment",
            "Gene-set scores, DESeq2 vs NB-VAE",
            gdx.pl.enrichment_compare(adata, "compare_enrichment", n_sets=20, labels=("DESeq2", "NB-VAE")),
        )
        summary = adata.uns["compare_enrichment"]["summary"]
        demo.finding(
            f"Gene-set scores, DESeq2 vs NB-VAE: Spearman {summary['spearman']:.3f} over {summary['n_shared']} "
            f"sets; same sign for {summary['sign_agreement']:.0%}."
        )


#: The demo's steps, in order; later workflow stages append theirs.
STEPS: list[Step] = [
    Step("Data", step_load),
    Step("Quality control", step_qc),
    Step("Filtering low-expression genes", step_filter),
    Step("Size factors", step_size_factors),
    Step("MDS", step_mds),
    Step("PCA", step_pca),
    Step("DESeq2", step_deseq2),
    Step("limma-voom", step_limma),
    Step("DESeq2 vs limma-voom", step_compare_classical),
    Step("NB-VAE", step_nbvae, own_line=True),
    Step("Generative differential expression", step_generative_de),
    Step("Latent path", step_latent_path),
    Step("Evaluation against the truth", step_evaluate),
    Step("Gene-set enrichment", step_enrichment),
]


# --- running --------------------------------------------------------------------------------------


class Progress:
    """A step logger: ``[2/6] Quality control ... done (0.4 s)`` on ``stream`` (stderr)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self._current: tuple[int, str, bool] = (0, "", False)

    def step(self, i: int, title: str, *, own_line: bool = False) -> float:
        """Announce step ``i`` (on a line of its own with ``own_line``); return its start time."""
        self.stream.write(f"[{i}/{self.total}] {title} ..." + ("\n" if own_line else ""))
        self.stream.flush()
        self._current = (i, title, own_line)
        return time.perf_counter()

    def done(self, started: float) -> float:
        """Finish the line of the step started at ``started``; return its duration in seconds."""
        seconds = time.perf_counter() - started
        i, title, own_line = self._current
        prefix = f"[{i}/{self.total}] {title} ..." if own_line else ""
        self.stream.write(f"{prefix} done ({seconds:.1f} s)\n")
        self.stream.flush()
        return seconds


def write_report(demo: Demo, timings: list[tuple[str, float]], argv: Sequence[str]) -> Path:
    """Write ``report.md``: the data, one section per step with its notes, figures and tables, and timings."""
    import gendex as gdx

    lines = [
        "# gendex demo report",
        "",
        f"gendex {gdx.__version__}; command: `gendex {shlex.join(argv)}`",
        "",
    ]
    if demo.findings:
        lines += ["## Summary", ""] + [f"- {text}" for text in demo.findings] + [""]
    for title, body in demo.sections:
        lines += [f"## {title}", ""]
        for item in body:
            lines += [item, ""]
    lines += ["## Run time", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {title} | {seconds:.1f} |" for title, seconds in timings]
    lines += [f"| total | {sum(s for _, s in timings):.1f} |", ""]
    path = demo.out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(args: argparse.Namespace, argv: Sequence[str], *, stream: TextIO | None = None) -> Path:
    """Run :data:`STEPS` in order, save the AnnData as ``results.h5ad`` and write ``report.md``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(args=args, out=out)
    progress = Progress(len(STEPS) + 1, stream)
    timings = []
    for i, step in enumerate(STEPS, start=1):
        demo.sections.append((step.title, []))
        started = progress.step(i, step.title, own_line=step.own_line)
        step.run(demo)
        timings.append((step.title, progress.done(started)))
    started = progress.step(len(STEPS) + 1, "Saving results")
    h5ad = out / "results.h5ad"
    demo.adata.write_h5ad(h5ad)
    demo.sections.append(
        (
            "Results",
            [f"The AnnData with every result (obs, var, obsm, varm, uns, layers) is [{h5ad.name}]({h5ad.name})."],
        )
    )
    timings.append(("Saving results", progress.done(started)))
    report = write_report(demo, timings, argv)
    (sys.stderr if stream is None else stream).write(f"report: {report}\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    """The ``gendex`` argument parser (``--version``; the ``demo`` subcommand)."""
    import gendex as gdx

    parser = argparse.ArgumentParser(prog="gendex", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gendex {gdx.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run QC, DESeq2, limma-voom, the NB-VAE and enrichment and write figures, tables and report.md",
        description="Run the gendex workflow on simulated data (default), GSE60450 or your own counts, and write "
        "figures (PNG), tables (CSV), results.h5ad and report.md into --out.",
    )
    demo.add_argument("--out", default="gendex-demo", help="output folder (default: %(default)s)")
    data = demo.add_mutually_exclusive_group()
    data.add_argument("--counts", type=Path, help="gene x sample count table (TSV/CSV, featureCounts, GEO)")
    data.add_argument(
        "--gse60450",
        nargs="?",
        const="",
        metavar="PATH",
        help="run on GSE60450: a local copy (file or folder), else $GENDEX_DATA_DIR, else a cached GEO download",
    )
    demo.add_argument("--samples", type=Path, help="sample sheet (first column: sample names); needs --counts")
    demo.add_argument("--design", help='design formula over sample-sheet columns, e.g. "~batch + condition"')
    demo.add_argument("--group", help="obs column of the experimental groups (default: the design's last term)")
    demo.add_argument(
        "--contrast",
        nargs=3,
        metavar=("FACTOR", "TEST", "REF"),
        help="what the DE methods compare, e.g. --contrast condition treated control (default: the last level of "
        "the groups vs the first)",
    )
    demo.add_argument("--gene-sets", type=Path, metavar="FILE.gmt", help="gene sets (GMT) for the enrichment step")
    demo.add_argument(
        "--gene-symbols",
        type=Path,
        metavar="TABLE",
        help="gene ID -> symbol table (NCBI gene_info or two columns) for plot labels and symbol GMTs",
    )
    demo.add_argument(
        "--epochs", type=int, metavar="N", help="NB-VAE training epochs (default: the model's, with early stopping)"
    )
    demo.add_argument("--no-nbvae", action="store_true", help="skip the NB-VAE and generative DE (the slowest steps)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data (default: %(default)s)")
    demo.add_argument("--n-genes", type=int, default=5000, help=argparse.SUPPRESS)
    demo.add_argument("--n-samples", type=int, default=12, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gendex`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.counts is not None and (args.samples is None or args.design is None):
            parser.error("--counts needs --samples and --design")
        if args.counts is None and args.samples is not None:
            parser.error("--samples needs --counts")
        if args.epochs is not None and args.epochs < 1:
            parser.error("--epochs must be at least 1")
        import matplotlib

        matplotlib.use("Agg")  # the demo only writes files
        try:
            run_demo(args, argv)
        except (ValueError, KeyError, FileNotFoundError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            sys.stderr.write(f"\ngendex demo: error: {message}\n")
            return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
