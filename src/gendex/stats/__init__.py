"""Pure array kernels (no AnnData): size factors, multiple testing, embeddings, DESeq2, limma/voom, NB helpers."""

from ._embedding import classical_mds, leading_logfc_distances, pca
from ._multitest import bh_adjust
from ._size_factors import size_factors_poscounts, size_factors_ratio

__all__ = [
    "bh_adjust",
    "classical_mds",
    "leading_logfc_distances",
    "pca",
    "size_factors_poscounts",
    "size_factors_ratio",
]
