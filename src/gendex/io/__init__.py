"""Reading count tables and gene-set files."""

from ._counts import read_counts

__all__ = ["read_counts"]
