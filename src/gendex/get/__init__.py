"""Getters: results stored by ``tl`` functions, as DataFrames."""

from ._de import de_keys, de_results
from ._design import design_matrix
from ._enrich import enrich_keys, enrich_results
from ._summary import de_summary

__all__ = ["de_keys", "de_results", "de_summary", "design_matrix", "enrich_keys", "enrich_results"]
