"""Data sets: GSE60450 (local copy or cached GEO download) and simulators with known truth."""

from ._gse60450 import gse60450
from ._simulate import simulate_counts, simulate_shift

__all__ = ["gse60450", "simulate_counts", "simulate_shift"]
