"""Batched DESeq2 engine: R DESeq2's algorithms vectorised over genes in torch float64."""

from typing import TYPE_CHECKING, Any

from ._fit import DESeq2Fit, deseq2_fit
from ._results import deseq2_lrt, deseq2_wald, independent_filtering

__all__ = [
    "BatchedInference",
    "DESeq2Fit",
    "deseq2_fit",
    "deseq2_lrt",
    "deseq2_wald",
    "independent_filtering",
]

if TYPE_CHECKING:
    from ._inference import BatchedInference


def __getattr__(name: str) -> Any:
    # BatchedInference subclasses pydeseq2's Inference: import pydeseq2 only when it is asked for
    if name == "BatchedInference":
        from ._inference import BatchedInference

        return BatchedInference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
