"""Reading count tables and gene-set files."""

from ._counts import read_counts
from ._gmt import read_gmt

__all__ = ["read_counts", "read_gmt"]
