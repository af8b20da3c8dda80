"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

from ._compare import lfc_scatter, na_genes
from ._de import md, pvalue_hist, volcano
from ._heatmap import heatmap
from ._nbvae import latent, latent_genes, training_curve

__all__ = [
    "heatmap",
    "latent",
    "latent_genes",
    "lfc_scatter",
    "md",
    "na_genes",
    "pvalue_hist",
    "training_curve",
    "volcano",
]
