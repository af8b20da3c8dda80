"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

__all__: list[str] = []
