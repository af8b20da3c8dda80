"""Pure array kernels (no AnnData): size factors, multiple testing, DESeq2 engine, limma/voom, NB helpers."""

from ._enrich import gsea_leading_edge, ora_test
from ._multitest import bh_adjust
from ._size_factors import size_factors_poscounts, size_factors_ratio

__all__ = ["bh_adjust", "gsea_leading_edge", "ora_test", "size_factors_poscounts", "size_factors_ratio"]
