"""Getters: results stored by ``tl`` functions, as DataFrames."""

from ._de import de_keys, de_results
from ._enrich import enrich_keys, enrich_results
from ._summary import de_summary

__all__ = ["de_keys", "de_results", "de_summary", "enrich_keys", "enrich_results"]
