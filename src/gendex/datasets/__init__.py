"""Data sets: GSE60450 (local copy or cached GEO download), simulators with known truth, hallmark gene sets."""

from ._classroom import simulate_classroom, simulate_shift
from ._gse60450 import gse60450
from ._hallmark import hallmark
from ._simulate import simulate_counts

__all__ = ["gse60450", "hallmark", "simulate_classroom", "simulate_counts", "simulate_shift"]
