"""Getters: results stored by ``tl`` functions, as DataFrames."""

from ._de import de_keys, de_results

__all__ = ["de_keys", "de_results"]
