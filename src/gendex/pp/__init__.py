"""Preprocessing: QC metrics, gene filters, size factors, log transforms and DESeq2's VST / rlog."""

from ._filter import filter_by_expr, filter_genes, filter_missing
from ._normalize import log2_normalize, log_cpm
from ._qc import qc_metrics
from ._size_factors import size_factors
from ._symbols import add_gene_symbols
from ._transform import rlog, vst

__all__ = [
    "add_gene_symbols",
    "filter_by_expr",
    "filter_genes",
    "filter_missing",
    "log2_normalize",
    "log_cpm",
    "qc_metrics",
    "rlog",
    "size_factors",
    "vst",
]
