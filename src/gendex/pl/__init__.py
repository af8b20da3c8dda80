"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

from ._compare import lfc_scatter, na_genes
from ._de import md, pvalue_hist, volcano
from ._embedding import embedding, latent, mds, pca
from ._enrichment import enrichment, enrichment_compare
from ._evaluate import fdr_curve, roc
from ._heatmap import heatmap
from ._nbvae import latent_genes, training_curve
from ._qc import density, library_sizes
from ._voom import voom

__all__ = [
    "density",
    "embedding",
    "enrichment",
    "enrichment_compare",
    "fdr_curve",
    "heatmap",
    "latent",
    "latent_genes",
    "lfc_scatter",
    "library_sizes",
    "md",
    "mds",
    "na_genes",
    "pca",
    "pvalue_hist",
    "roc",
    "training_curve",
    "volcano",
    "voom",
]
