"""Pure array kernels (no AnnData): size factors, multiple testing, DESeq2 engine, limma/voom, NB helpers."""

from ._compare import compare_calls
from ._multitest import bh_adjust
from ._size_factors import size_factors_poscounts, size_factors_ratio

__all__ = ["bh_adjust", "compare_calls", "size_factors_poscounts", "size_factors_ratio"]
