"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

from ._embedding import mds, pca
from ._qc import density, library_sizes

__all__ = ["density", "library_sizes", "mds", "pca"]
