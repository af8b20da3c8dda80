"""Pure array kernels (no AnnData): size factors, multiple testing, DESeq2 engine, limma/voom, NB helpers."""

from ._deseq2 import BatchedInference, DESeq2Fit, deseq2_fit, deseq2_lrt, deseq2_wald
from ._multitest import bh_adjust
from ._size_factors import size_factors_poscounts, size_factors_ratio

__all__ = [
    "BatchedInference",
    "DESeq2Fit",
    "bh_adjust",
    "deseq2_fit",
    "deseq2_lrt",
    "deseq2_wald",
    "size_factors_poscounts",
    "size_factors_ratio",
]
