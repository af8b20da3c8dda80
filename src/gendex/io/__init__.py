"""Reading count tables and gene-set files; writing DE results tables."""

from ._counts import read_counts
from ._gmt import read_gmt
from ._write import write_de

__all__ = ["read_counts", "read_gmt", "write_de"]
