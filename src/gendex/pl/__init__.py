"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

from ._compare import lfc_scatter, na_genes
from ._de import md, pvalue_hist, volcano
from ._evaluate import fdr_curve, roc
from ._heatmap import heatmap
from ._nbvae import latent, latent_genes, training_curve
from ._voom import voom

__all__ = [
    "fdr_curve",
    "heatmap",
    "latent",
    "latent_genes",
    "lfc_scatter",
    "md",
    "na_genes",
    "pvalue_hist",
    "roc",
    "training_curve",
    "volcano",
    "voom",
]
