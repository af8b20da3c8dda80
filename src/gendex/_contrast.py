"""The shared DE vocabulary: how every DE function names its comparison (see ``docs/api.md``, Conventions).

Every two-group DE function (``tl.deseq2``, ``tl.limma_voom``, ``tl.ttest``, ``tl.generative_de``) takes
``contrast=[factor, test, reference]`` (PyDESeq2's and pertpy's form): ``log2FoldChange = log2(test /
reference)``. ``tl.ttest`` and ``tl.generative_de`` also accept scanpy/scvi-tools' ``groupby=, group1=,
group2=`` as an alias (``group1`` is the test group, ``group2`` the reference); giving both forms is an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple


class Comparison(NamedTuple):
    """A two-level comparison ``log2(test / reference)`` within ``obs[factor]``."""

    factor: str
    test: str
    reference: str

    def as_list(self) -> list[str]:
        """``[factor, test, reference]``, the form stored in ``uns[key]["contrast"]``."""
        return [self.factor, self.test, self.reference]

    @property
    def label(self) -> str:
        """Human-readable ``"test vs reference"``."""
        return f"{self.test} vs {self.reference}"


def resolve_comparison(
    contrast: Sequence[str] | None = None,
    *,
    groupby: str | None = None,
    group1: str | None = None,
    group2: str | None = None,
    required: bool = True,
) -> Comparison | None:
    """One :class:`Comparison` from ``contrast=[factor, test, reference]`` or the alias ``groupby/group1/group2``.

    Raises a ``ValueError`` naming the problem when both forms or neither (with ``required``) are given, when
    the alias is incomplete, or when ``contrast`` is not three names with two different levels.
    """
    alias = (groupby, group1, group2)
    if contrast is not None and any(a is not None for a in alias):
        raise ValueError(
            "give the comparison once: either `contrast=[factor, test, reference]` or `groupby=, group1=, group2=`"
        )
    if contrast is None:
        if all(a is None for a in alias):
            if required:
                raise ValueError("name the comparison: `contrast=[factor, test, reference]`")
            return None
        if any(a is None for a in alias):
            raise ValueError("`groupby`, `group1` and `group2` must be given together (or use `contrast=`)")
        contrast = [groupby, group1, group2]  # type: ignore[list-item]
    if isinstance(contrast, str) or len(contrast) != 3:
        raise ValueError(f"`contrast` must be [factor, test_level, reference_level], got {contrast!r}")
    factor, test, ref = (str(c) for c in contrast)
    if test == ref:
        raise ValueError(f"the test and reference levels of the contrast must differ, got {test!r} twice")
    return Comparison(factor, test, ref)


def deprecated_argument(old: str, new: str, func: str, *, stacklevel: int = 3) -> None:
    """Warn once per call site that ``old`` of ``func`` is deprecated in favour of ``new`` (kept one release)."""
    warnings.warn(
        f"`{func}({old}=...)` is deprecated and will be removed in the next release; use `{new}` instead",
        FutureWarning,
        stacklevel=stacklevel,
    )


def keyword_design(args: tuple, design: str | None, func: str, *, default: str | None = None) -> str | None:
    """The design of ``func(adata, *args, design=...)``: keyword-only, a positional one kept for 0.1 with a warning.

    ``args`` are the extra positional arguments the function received; at most one (the design) is accepted.
    """
    if len(args) > 1:
        raise TypeError(
            f"{func}() takes the AnnData as its only positional argument; pass `design=` and the rest by name"
        )
    if args:
        if design is not None:
            raise TypeError(f"{func}() got the design twice (positional and `design=`); pass only `design=`")
        warnings.warn(
            f"passing the design positionally to {func}() is deprecated and will stop working in the next release; "
            f"use {func}(adata, design={args[0]!r}, ...)",
            FutureWarning,
            stacklevel=3,
        )
        design = args[0]
    return default if design is None else design
