"""The demo's steps: small functions over the public API, in report order (:data:`STEPS`).

Each step takes the :class:`~gendex._demo.Demo` state (inputs already checked by
:func:`gendex._demo.prepare`), calls ``gdx.pp``/``gdx.tl``/``gdx.pl`` with explicit result keys, and records its
figures, tables and notes. Steps read back only the keys they or an earlier step wrote (``demo.results``).
Adding a step is a few lines::

    def step_ttest(demo: Demo) -> None:
        gdx.tl.ttest(demo.data, contrast=demo.contrast, layer="log_cpm", key_added="ttest")
        demo.results["ttest"] = "t-test"
        demo.table("ttest_results", "t-test results", gdx.get.de_results(demo.data, "ttest"))


    STEPS.append(Step("t-test", step_ttest))  # STEPS and Step: gendex._demo
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._state import ALPHA, Demo

if TYPE_CHECKING:
    import pandas as pd


def step_load(demo: Demo) -> None:
    """Describe the data (read and checked before the first step)."""
    adata, args = demo.data, demo.args
    factor, test, ref = demo.contrast
    demo.note(
        f"{adata.n_obs} samples x {adata.n_vars:,} genes: {demo.dataset}. Design `{demo.design}`; "
        f"differential expression of {test} vs {ref} in `{factor}`."
    )
    if args.gene_symbols is not None:
        rec = adata.uns["add_gene_symbols"]
        demo.note(
            f"Gene symbols from `{args.gene_symbols}` (`pp.add_gene_symbols`): {rec['n_mapped']:,} genes mapped, "
            f"{rec['n_unmapped']:,} keep their ID."
        )


def step_qc(demo: Demo) -> None:
    """Library sizes and detected genes per sample."""
    import gendex as gdx

    adata = demo.data
    gdx.pp.qc_metrics(adata)
    cols = ["library_size", "n_genes_detected", *dict.fromkeys([demo.group, demo.color])]
    from ..pl._labels import short_names

    # the full sample IDs index the table (to join it with other data); `label` is the name every figure shows
    table = adata.obs[cols].copy()
    table.insert(0, "label", short_names(adata.obs_names))
    demo.table("qc_metrics", "QC metrics per sample", table)
    labels = "name" if "name" in adata.obs.columns else None
    demo.figure("library_sizes", "Library sizes", gdx.pl.library_sizes(adata, color=demo.color, labels=labels))
    lib = adata.obs["library_size"]
    demo.note(f"Library sizes range from {lib.min():,} to {lib.max():,} counts (median {lib.median():,.0f}).")


def step_filter(demo: Demo) -> None:
    """EdgeR's filterByExpr rule; log-CPM densities before and after."""
    import gendex as gdx

    adata = demo.data
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
    if demo.n_true_de is not None:
        demo.note(f"{_truth_text(demo)}; the evaluation counts the kept ones.")


def _truth_text(demo: Demo) -> str:
    """``"500 genes truly DE, 475 of them kept by the filter"``."""
    kept = int(demo.data.var["is_de"].sum())
    return f"{demo.n_true_de:,} genes truly DE, {kept:,} of them kept by the filter"


def step_size_factors(demo: Demo) -> None:
    """DESeq2 median-of-ratios size factors."""
    import gendex as gdx

    adata = demo.data
    gdx.pp.size_factors(adata)
    cols = ["size_factors", "library_size"] + [c for c in ("true_size_factor",) if c in adata.obs.columns]
    demo.table("size_factors", "DESeq2 size factors", adata.obs[cols])
    sf = adata.obs["size_factors"]
    demo.note(f"Size factors range from {sf.min():.3f} to {sf.max():.3f}.")


def step_mds(demo: Demo) -> None:
    """limma-style MDS on the leading log-fold-changes."""
    import gendex as gdx

    adata = demo.data
    gdx.tl.mds(adata, n_top_genes=500, key_added="X_mds")
    labels = "name" if "name" in adata.obs.columns else adata.n_obs <= 24
    demo.figure("mds", "MDS (leading log-fold-changes)", gdx.pl.mds(adata, color=demo.color, labels=labels))
    ratio = adata.uns["mds"]["variance_ratio"]
    demo.note(f"Dimensions 1 and 2 explain {100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of the variance.")


def step_pca(demo: Demo) -> None:
    """PCA on log-CPM."""
    import gendex as gdx

    adata = demo.data
    gdx.tl.pca(adata, key_added="X_pca")
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

    adata, key = demo.data, "deseq2"
    gdx.tl.deseq2(adata, design=demo.design, contrast=demo.contrast, alpha=ALPHA, key_added=key)
    demo.results[key] = "DESeq2"
    res = gdx.get.de_results(adata, key)
    demo.table("deseq2_results", "DESeq2 results", res)
    n, up, down = _n_called(res)
    demo.finding(
        f"DESeq2 (`{demo.design}`, {_contrast_text(demo)}): {n:,} of {adata.n_vars:,} genes at padj < {ALPHA} "
        f"({up:,} up, {down:,} down)."
    )
    reasons = res["na_reason"].astype(str).value_counts()
    na = ", ".join(f"{reasons[r]:,} {r.replace('_', ' ')}" for r in reasons.index if r)
    demo.note(f"Genes with an NA adjusted p-value: {na}." if na else "No gene has an NA adjusted p-value.")
    demo.figure("deseq2_volcano", "DESeq2 volcano plot", gdx.pl.volcano(adata, key, alpha=ALPHA))
    demo.figure("deseq2_md", "DESeq2 MD plot", gdx.pl.md(adata, key, alpha=ALPHA))
    demo.figure("deseq2_pvalues", "DESeq2 p-value histogram", gdx.pl.pvalue_hist(adata, key))
    demo.figure(
        "deseq2_heatmap",
        "Top DESeq2 genes (log-CPM, row z-scores)",
        gdx.pl.heatmap(adata, key, n_genes=40, groupby=demo.contrast[0]),
    )


def step_limma(demo: Demo) -> None:
    """limma-voom (TMM, voom weights, eBayes): table, mean-variance trend, MD plot, p-value histogram."""
    import gendex as gdx

    adata, key = demo.data, "limma_voom"
    gdx.tl.limma_voom(adata, design=demo.design, contrast=demo.contrast, key_added=key)
    demo.results[key] = "limma-voom"
    res = gdx.get.de_results(adata, key)
    demo.table("limma_voom_results", "limma-voom results", res)
    n, up, down = _n_called(res)
    demo.finding(f"limma-voom ({_contrast_text(demo)}): {n:,} genes at adj.P < {ALPHA} ({up:,} up, {down:,} down).")
    rec = adata.uns[key]
    demo.note(f"eBayes prior: s2.prior {rec['s2_prior']:.4g}, df.prior {rec['df_prior']:.4g}.")
    demo.figure("limma_voom_trend", "voom mean-variance trend", gdx.pl.voom(adata, key))
    demo.figure("limma_voom_md", "limma-voom MD plot", gdx.pl.md(adata, key, alpha=ALPHA))
    demo.figure("limma_voom_pvalues", "limma-voom p-value histogram", gdx.pl.pvalue_hist(adata, key))


def compare(demo: Demo, key1: str, key2: str) -> dict[str, Any]:
    """``tl.compare_de`` of two results, the scatter of their log2 fold changes and a one-line finding."""
    import gendex as gdx

    adata = demo.data
    key = f"compare_{key1}_vs_{key2}"
    gdx.tl.compare_de(adata, key1, key2, alpha=ALPHA, key_added=key)
    summary = adata.uns[key]["summary"]
    name1, name2 = demo.results[key1], demo.results[key2]
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
    compare(demo, "deseq2", "limma_voom")


def step_evaluate(demo: Demo) -> None:
    """On simulated data: every DE result against the known truth (error rates, ROC, observed FDR)."""
    import pandas as pd

    import gendex as gdx

    adata = demo.data
    if demo.n_true_de is None:
        demo.note("No known truth (`var['is_de']`) for this data set: evaluation skipped.")
        return
    keys = list(demo.results)
    rows = []
    for key in keys:
        call = "qvalue" if key == "nbvae_de" else "padj"
        rows.append(gdx.tl.evaluate_de(adata, key, call=call, threshold=ALPHA, key_added=f"eval_{key}"))
    metrics = pd.concat(rows).drop(columns="method")
    metrics.insert(0, "key", keys)
    metrics.index = pd.Index([demo.results[k] for k in keys], name="method")
    demo.note(f"{_truth_text(demo)}: the rates below count the {int(adata.var['is_de'].sum()):,} kept.")
    demo.table("evaluation", "Evaluation against the truth", metrics)
    demo.markdown(metrics[["n_called", "TP", "FP", "TPR", "FPR", "FDR", "precision", "AUROC", "AUPRC"]])
    for name, row in metrics.iterrows():
        demo.findings.append(
            f"{name} against the truth at {ALPHA}: TPR {row['TPR']:.3f}, observed FDR {row['FDR']:.3f}, "
            f"AUROC {row['AUROC']:.3f} ({_truth_text(demo)})."
        )
    demo.figure("roc", "ROC curves", gdx.pl.roc(adata, keys))
    demo.figure("fdr_curve", "Observed vs nominal FDR", gdx.pl.fdr_curve(adata, keys))


def step_enrichment(demo: Demo) -> None:
    """Gene-set enrichment (decoupler ULM on the DE statistic) of DESeq2 and the NB-VAE, side by side."""
    import gendex as gdx

    args, adata, net = demo.args, demo.data, demo.net
    if net is None:
        demo.note("No gene sets given (`--gene-sets FILE.gmt`): enrichment skipped.")
        return
    symbols = "symbol" if demo.net_by_symbol else None
    column = adata.var["symbol"] if symbols else adata.var_names
    n_matched = len(set(net["target"].astype(str)) & set(column.astype(str)))
    demo.note(
        f"{net['source'].nunique():,} gene sets from `{args.gene_sets}`, matched by "
        f"{'gene symbol' if symbols else 'gene ID'} ({n_matched:,} of their genes are measured)."
    )
    ekeys = {}
    for key in [k for k in ("deseq2", "nbvae_de") if k in demo.results]:
        ekey = ekeys[key] = f"enrich_ulm_{key}"
        name = demo.results[key]
        gdx.tl.enrich(adata, key=key, net=net, method="ulm", gene_symbols=symbols, key_added=ekey)
        res = gdx.get.enrich_results(adata, ekey)
        demo.table(ekey, f"ULM enrichment of the {name} statistic", res)
        demo.figure(ekey, f"Top gene sets, {name}", gdx.pl.enrichment(adata, ekey, n_sets=15))
        sig = res[res["padj"] < ALPHA].sort_values("score")
        up = ", ".join(sig["source"][sig["score"] > 0][::-1][:3]) or "none"
        down = ", ".join(sig["source"][sig["score"] < 0][:3]) or "none"
        demo.finding(
            f"{name} enrichment: {len(sig)} of {len(res)} sets at padj < {ALPHA}; top up: {up}; top down: {down}."
        )
    if len(ekeys) == 2:
        ckey = "compare_enrichment"
        gdx.tl.compare_enrichment(adata, ekeys["deseq2"], ekeys["nbvae_de"], key_added=ckey)
        names = (demo.results["deseq2"], demo.results["nbvae_de"])
        demo.figure(
            ckey,
            f"Gene-set scores, {names[0]} vs {names[1]}",
            gdx.pl.enrichment_compare(adata, ckey, n_sets=20, labels=names),
        )
        summary = adata.uns[ckey]["summary"]
        demo.finding(
            f"Gene-set scores, {names[0]} vs {names[1]}: Spearman {summary['spearman']:.3f} over "
            f"{summary['n_shared']} sets; same sign for {summary['sign_agreement']:.0%}."
        )
