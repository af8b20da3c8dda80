"""Pure array kernels (no AnnData): size factors, multiple testing, DESeq2 engine, limma/voom, NB helpers."""

from ._ash import AshPosterior, ash, posterior_fdr
from ._multitest import bh_adjust
from ._size_factors import size_factors_poscounts, size_factors_ratio

__all__ = ["AshPosterior", "ash", "bh_adjust", "posterior_fdr", "size_factors_poscounts", "size_factors_ratio"]
