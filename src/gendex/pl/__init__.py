"""Plots: QC, DE, the NB-VAE and enrichment; each reads what ``pp``/``tl`` stored and returns the Axes."""

from ._enrichment import enrichment, enrichment_compare

__all__: list[str] = ["enrichment", "enrichment_compare"]
