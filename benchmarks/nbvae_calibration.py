"""Calibration of the NB-VAE's generative DE on simulated counts, against PyDESeq2, with an ablation of the
sources of uncertainty.

Usage: ``python benchmarks/nbvae_calibration.py [--designs 12,6] [--seeds 1,2,3,4,5] [--genes 5000]
[--threads 1] [--out table.csv]``.

For each design (``n_samples``: 12 = 6 vs 6, 6 = 3 vs 3) and seed: ``simulate_counts`` (10% DE), DESeq2
(PyDESeq2, ``~condition``, padj < 0.05), then one default NB-VAE fit and generative DE (B vs A, ``delta=0.25``,
``fdr_target=0.05``, ``ci_level=0.9``) with the uncertainty built from: latent draws only (what scvi-tools'
``differential_expression`` does), + the decoder's Laplace posterior, + the dispersions' posterior; each with a
flat prior on the log fold change (the draws as they are) and with the adaptive shrinkage prior (the default).
Reports observed FDR and TPR of ``is_de``, TPR relative to DESeq2's, and the share of genes whose 90% interval
holds the true log2 fold change (all genes, and DE genes only). Figures, not tests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

SOURCES = {"z": ("z",), "z+decoder": ("z", "decoder"), "z+decoder+dispersion": ("z", "decoder", "dispersion")}


def deseq2_calls(adata) -> np.ndarray:
    from anndata import AnnData
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    inference = DefaultInference(n_cpus=1)
    fresh = AnnData(X=np.asarray(adata.layers["counts"]), obs=adata.obs[["condition"]].copy())
    dds = DeseqDataSet(adata=fresh, design="~condition", quiet=True, inference=inference)
    dds.deseq2()
    ds = DeseqStats(dds, contrast=["condition", "B", "A"], quiet=True, inference=inference)
    ds.summary()
    return (ds.results_df["padj"] < 0.05).to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--designs", default="12,6")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    import gendex as gdx

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for n_samples in [int(x) for x in args.designs.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            adata = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=args.genes, random_state=seed)
            gdx.pp.size_factors(adata)
            truth, de = adata.var["true_log2fc"].to_numpy(), adata.var["is_de"].to_numpy()
            dcall = deseq2_calls(adata)
            d_tpr = (dcall & de).sum() / de.sum()
            d_fdr = (dcall & ~de).sum() / max(dcall.sum(), 1)
            t0 = time.perf_counter()
            model = gdx.tl.nbvae(adata, random_state=seed, accelerator="cpu", enable_progress_bar=False)
            train_s = time.perf_counter() - t0
            for name, sources in SOURCES.items():
                for prior in ("flat", "adaptive"):
                    t0 = time.perf_counter()
                    gdx.tl.generative_de(
                        adata, model, groupby="condition", group1="B", group2="A", uncertainty=sources,
                        lfc_prior=prior, random_state=seed,
                    )  # fmt: skip
                    de_s = time.perf_counter() - t0
                    t = adata.varm["nbvae_de"]
                    called = t["is_de"].to_numpy()
                    inside = ((t["lfc_lower"] <= truth) & (truth <= t["lfc_upper"])).to_numpy()
                    tpr = (called & de).sum() / de.sum()
                    rows.append(
                        {
                            "design": f"{n_samples // 2} vs {n_samples // 2}",
                            "seed": seed,
                            "uncertainty": name,
                            "lfc_prior": prior,
                            "n_called": int(called.sum()),
                            "fdr": (called & ~de).sum() / max(called.sum(), 1),
                            "tpr": tpr,
                            "deseq2_tpr": d_tpr,
                            "deseq2_fdr": d_fdr,
                            "tpr_ratio": tpr / d_tpr,
                            "coverage": inside.mean(),
                            "coverage_de": inside[de].mean(),
                            "epochs": adata.uns["X_nbvae"]["params"]["n_epochs"],
                            "train_s": train_s,
                            "de_s": de_s,
                        }
                    )
            last = pd.DataFrame(rows[-len(SOURCES) * 2 :])
            print(last.round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    cols = ["fdr", "tpr", "tpr_ratio", "deseq2_fdr", "coverage", "coverage_de"]
    summary = table.groupby(["design", "uncertainty", "lfc_prior"])[cols].agg(["mean", "min", "max"])
    pd.set_option("display.width", 250)
    print("\nMean (min, max) over seeds:")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
