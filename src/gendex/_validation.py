"""Input checks shared by every public function.

Each check raises a ``ValueError``, ``KeyError`` or ``TypeError`` naming the problem *before* anything is
written, so the caller's AnnData is left exactly as it was when a check fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeGuard

import numpy as np
import pandas as pd
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData
    from numpy.typing import NDArray


def check_not_backed(adata: AnnData) -> None:
    """Refuse backed AnnData: every function here needs the matrix in memory."""
    if adata.isbacked:
        raise ValueError(
            "`adata` is backed on disk (opened with backed='r'); load it into memory first with `adata.to_memory()`."
        )


def check_unique_names(adata: AnnData) -> None:
    """Raise if sample or gene names are duplicated."""
    for axis, names in (("obs_names (samples)", adata.obs_names), ("var_names (genes)", adata.var_names)):
        if not names.is_unique:
            dups = names[names.duplicated()].unique().tolist()
            raise ValueError(f"duplicate {axis}: {dups[:10]}{' ...' if len(dups) > 10 else ''}; make them unique first")


def check_string_names(adata: AnnData) -> None:
    """Raise unless ``obs_names`` and ``var_names`` are strings.

    anndata turns other names into strings when it builds an AnnData, but assigning ``adata.var.index``
    directly can leave integers; results stored under integer names would be written by ``write_h5ad`` into a
    file that ``read_h5ad`` then refuses ("value.index does not match parent's var names").
    """
    for axis in ("obs", "var"):
        names = getattr(adata, f"{axis}_names")
        bad = next((n for n in names if not isinstance(n, str)), None) if names.dtype == object else None
        if bad is None and (names.dtype == object or pd.api.types.is_string_dtype(names.dtype)):
            continue
        got = f"{type(bad).__name__} names (e.g. {bad!r})" if bad is not None else f"dtype {names.dtype}"
        raise TypeError(
            f"`adata.{axis}_names` must be strings, got {got}: results stored under them could not be read back "
            f"from .h5ad; convert them first with `adata.{axis}_names = adata.{axis}_names.astype(str)`"
        )


def get_matrix(adata: AnnData, layer: str | None) -> NDArray | sparse.spmatrix:
    """Return ``adata.layers[layer]`` (or ``X`` when ``layer`` is None) without copying.

    Refuses backed or empty AnnData, names that are not strings and duplicated sample or gene names first.
    """
    check_not_backed(adata)
    check_not_empty(adata)
    check_string_names(adata)
    check_unique_names(adata)
    if layer is None:
        if adata.X is None:
            raise ValueError("`adata.X` is empty (None); pass `layer=` naming the layer with the data")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"`adata.layers[{layer!r}]` not found; available: {list(adata.layers)}")
    return adata.layers[layer]


def check_not_empty(adata: AnnData) -> None:
    """Raise if ``adata`` has no samples or no genes."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"`adata` is empty ({adata.n_obs} samples x {adata.n_vars} genes)")


def is_sparse(x: object) -> TypeGuard[sparse.spmatrix]:
    """:func:`scipy.sparse.issparse` (sparse matrices and sparse arrays) in a form the type checker narrows on."""
    return bool(sparse.issparse(x))


def to_dense(x: NDArray | sparse.spmatrix, dtype: type | None = None) -> NDArray:
    """Densify a (possibly sparse) matrix into a new C-contiguous array."""
    arr = x.toarray() if is_sparse(x) else np.asarray(x)
    return np.array(arr, dtype=dtype if dtype is not None else arr.dtype, order="C", copy=True)


def check_counts(x: NDArray | sparse.spmatrix, *, what: str = "counts") -> None:
    """Raise a ``ValueError`` unless ``x`` holds finite, non-negative integers (dense or sparse)."""
    vals = x.data if is_sparse(x) else np.asarray(x)
    if vals.size == 0 and (0 in x.shape):
        raise ValueError(f"{what}: the matrix is empty (shape {x.shape})")
    if not np.issubdtype(vals.dtype, np.number) or np.issubdtype(vals.dtype, np.complexfloating):
        raise TypeError(f"{what}: expected a numeric matrix, got dtype {vals.dtype}")
    if np.issubdtype(vals.dtype, np.floating):
        if np.isnan(vals).any():
            raise ValueError(f"{what}: contains NaN values; counts must be non-negative integers")
        if np.isinf(vals).any():
            raise ValueError(f"{what}: contains infinite values; counts must be non-negative integers")
        if (vals != np.round(vals)).any():
            raise ValueError(
                f"{what}: contains non-integer values (e.g. {vals[vals != np.round(vals)][:3].tolist()}); "
                "raw counts are required, not normalised or transformed data"
            )
    if (vals < 0).any():
        raise ValueError(f"{what}: contains negative values (min {vals.min()}); counts must be non-negative")


def get_counts(adata: AnnData, layer: str | None = "counts", *, dense: bool = True) -> NDArray | sparse.spmatrix:
    """Fetch and validate raw counts from ``adata`` (samples x genes).

    Returns a new dense ``int64`` array when ``dense`` (the default), else the stored matrix itself.
    """
    x = get_matrix(adata, layer)
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    check_counts(x, what=where)
    if not dense:
        return x
    return to_dense(x, dtype=np.int64)


def check_no_empty_samples(counts: NDArray, obs_names: Sequence[str]) -> None:
    """Raise if a sample has no counts at all (its size factor or library size would be 0)."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    bad = np.asarray(obs_names)[totals == 0]
    if len(bad):
        raise ValueError(f"samples with all-zero counts: {bad.tolist()}; remove them first")


def check_positive_obs(adata: AnnData, key: str) -> NDArray[np.float64]:
    """Return ``adata.obs[key]`` as floats, raising unless every value is finite and positive (size factors)."""
    values = pd.to_numeric(check_obs_key(adata, key), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        raise ValueError(
            f"`adata.obs[{key!r}]` must hold finite positive numbers; bad for samples "
            f"{adata.obs_names[bad].tolist()[:10]}"
        )
    return values


def check_obs_key(adata: AnnData, key: str) -> pd.Series:
    """Return ``adata.obs[key]`` or raise a ``KeyError`` listing the available columns."""
    if key not in adata.obs.columns:
        raise KeyError(f"`adata.obs[{key!r}]` not found; available columns: {list(adata.obs.columns)}")
    return adata.obs[key]


def check_groups(adata: AnnData, groupby: str, groups: Sequence[str], *, min_size: int = 2) -> pd.Series:
    """Check that ``groupby`` exists, holds each of ``groups`` and each has at least ``min_size`` samples."""
    col = check_obs_key(adata, groupby).astype(str)
    levels = sorted(col.unique().tolist())
    for g in groups:
        n = int((col == str(g)).sum())
        if n == 0:
            raise ValueError(f"group {g!r} not found in `adata.obs[{groupby!r}]`; levels: {levels}")
        if n < min_size:
            raise ValueError(
                f"group {g!r} in `adata.obs[{groupby!r}]` has {n} sample(s); at least {min_size} are needed"
            )
    return col


def check_copy_inplace(*, copy: bool, inplace: bool) -> None:
    """Scanpy's rule: ``copy=True`` with ``inplace=False`` is contradictory."""
    if copy and not inplace:
        raise ValueError("`copy=True` and `inplace=False` cannot be combined")
