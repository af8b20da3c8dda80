"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

from ._evaluate import fdr_curve, roc
from ._voom import voom

__all__: list[str] = ["fdr_curve", "roc", "voom"]
