"""Input checks shared by every public function.

Each check raises a ``ValueError``, ``KeyError`` or ``TypeError`` naming the problem *before* anything is
written, so the caller's AnnData is left exactly as it was when a check fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import pandas as pd
from scipy import sparse

from ._lazy import is_dask, map_chunks, sum_rows

if TYPE_CHECKING:
    from anndata import AnnData
    from numpy.typing import NDArray


#: the advice given wherever counts on disk are refused
LAZY_ROUTE = (
    "to keep the counts on disk, open the file with `anndata.experimental.read_lazy` (or the matrix with "
    "`anndata.experimental.read_elem_lazy`) and use the functions that work on dask counts (gdx.pp.qc_metrics, "
    "filter_genes, filter_by_expr, size_factors, log_cpm, vst; gdx.tl.limma_voom, ttest, deseq2)"
)


def check_not_backed(adata: AnnData, what: str | None = None) -> None:
    """Refuse backed AnnData in a function (``what``) that needs the matrix in memory, pointing to the lazy route."""
    if adata.isbacked:
        who = f"{what} needs" if what else "this function needs"
        raise ValueError(
            f"`adata` is backed on disk (opened with backed='r') and {who} the matrix in memory: load it with "
            f"`adata.to_memory()` (or a gene subset, `adata[:, genes].to_memory()`); {LAZY_ROUTE}."
        )


def check_backed_writes(adata: AnnData, *, copy: bool, subset: bool = False) -> None:
    """For a function that reads a backed ``X`` lazily: refuse what anndata cannot do to a backed AnnData.

    anndata copies a backed AnnData only to a new file, and subsetting one in place copies it, so ``copy=True``
    and gene subsets are refused up front (the AnnData stays as it was).
    """
    if not adata.isbacked:
        return
    if copy:
        raise ValueError(
            "`copy=True` on a backed AnnData (opened with backed='r'): anndata copies it only to a new file; "
            "call without `copy`, or open the file with `anndata.experimental.read_lazy` instead"
        )
    if subset:
        raise ValueError(
            "a backed AnnData (opened with backed='r') cannot be subset in place: pass `subset=False` to flag "
            "the genes only, or open the file with `anndata.experimental.read_lazy`, whose subsets stay lazy"
        )


def check_in_memory(x: Any, where: str, what: str) -> None:
    """Refuse a dask matrix (``where``) in a function (``what``) that needs it in memory, saying how to load it."""
    if is_dask(x):
        raise ValueError(
            f"{where} is a dask array (counts out of core) and {what} needs it in memory: load it with "
            f"`adata.to_memory()` (or a gene subset, `adata[:, genes].to_memory()`); {LAZY_ROUTE}."
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
        if names.dtype == object and names.inferred_type == "string":  # pandas caches it: no pass per call
            continue
        bad = next((n for n in names if not isinstance(n, str)), None) if names.dtype == object else None
        if bad is None and (names.dtype == object or pd.api.types.is_string_dtype(names.dtype)):
            continue
        got = f"{type(bad).__name__} names (e.g. {bad!r})" if bad is not None else f"dtype {names.dtype}"
        raise TypeError(
            f"`adata.{axis}_names` must be strings, got {got}: results stored under them could not be read back "
            f"from .h5ad; convert them first with `adata.{axis}_names = adata.{axis}_names.astype(str)`"
        )


def get_matrix(adata: AnnData, layer: str | None, *, lazy: bool = False) -> Any:
    """Return ``adata.layers[layer]`` (or ``X`` when ``layer`` is None) without copying.

    Refuses empty AnnData, names that are not strings and duplicated sample or gene names first. Backed AnnData
    is refused unless ``lazy`` (the caller computes in blocks): then a backed ``X`` comes back as a dask array
    reading the file chunk by chunk.
    """
    if not lazy:
        check_not_backed(adata)
    check_not_empty(adata)
    check_string_names(adata)
    check_unique_names(adata)
    if layer is None:
        if adata.isbacked:
            return _backed_x(adata)
        if adata.X is None:
            raise ValueError("`adata.X` is empty (None); pass `layer=` naming the layer with the data")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"`adata.layers[{layer!r}]` not found; available: {list(adata.layers)}")
    return adata.layers[layer]


def _backed_x(adata: AnnData) -> Any:
    """The ``X`` of a backed AnnData as a dask array of sample blocks (read by each task from the file)."""
    from anndata.experimental import read_elem_lazy

    from ._lazy import block_size

    rows = min(adata.n_obs, block_size(adata.n_vars, n_arrays=4))
    return read_elem_lazy(adata.file._file["X"], chunks=(rows, adata.n_vars))


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


def _check_count_dtype(x: Any, what: str) -> None:
    if 0 in x.shape:
        raise ValueError(f"{what}: the matrix is empty (shape {x.shape})")
    dtype = np.dtype(x.dtype)
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{what}: expected a numeric matrix, got dtype {dtype}")


@dataclass(frozen=True)
class _CountProblems:
    """What is wrong with (part of) a count matrix: NaN, infinities, some non-integers, the minimum."""

    nan: bool
    inf: bool
    non_integer: list
    minimum: float

    @classmethod
    def of(cls, vals: NDArray) -> _CountProblems:
        if vals.size == 0:
            return cls(False, False, [], 0.0)
        if not np.issubdtype(vals.dtype, np.floating):
            return cls(False, False, [], vals.min().item())
        nan = bool(np.isnan(vals).any())
        inf = bool(np.isinf(vals).any())
        off = vals != np.round(vals)
        return cls(nan, inf, vals[off][:3].tolist() if off.any() else [], vals.min().item())

    @classmethod
    def merge(cls, parts: Sequence[_CountProblems]) -> _CountProblems:
        return cls(
            any(p.nan for p in parts),
            any(p.inf for p in parts),
            next((p.non_integer for p in parts if p.non_integer), []),
            min((p.minimum for p in parts if not (p.nan or p.inf)), default=0.0),
        )

    def raise_any(self, what: str) -> None:
        if self.nan:
            raise ValueError(f"{what}: contains NaN values; counts must be non-negative integers")
        if self.inf:
            raise ValueError(f"{what}: contains infinite values; counts must be non-negative integers")
        if self.non_integer:
            raise ValueError(
                f"{what}: contains non-integer values (e.g. {self.non_integer}); "
                "raw counts are required, not normalised or transformed data"
            )
        if self.minimum < 0:
            raise ValueError(f"{what}: contains negative values (min {self.minimum}); counts must be non-negative")


def check_counts(x: NDArray | sparse.spmatrix, *, what: str = "counts") -> None:
    """Raise a ``ValueError`` unless ``x`` holds finite, non-negative integers (dense, sparse or dask).

    A dask matrix is checked in one blockwise pass (see :func:`scan_counts`).
    """
    _check_count_dtype(x, what)
    if is_dask(x):
        _scan(x, what)
        return
    vals = x.data if is_sparse(x) else np.asarray(x)
    _CountProblems.of(vals).raise_any(what)


@dataclass(frozen=True)
class LazyCounts:
    """Dask counts checked in one pass: the array, each sample's total and the fused kernel's results.

    ``results[i][j]`` is the kernel's result on the ``i``-th row chunk and ``j``-th column chunk (see
    :func:`gendex._lazy.map_chunks`); empty when no kernel was given.
    """

    x: Any
    lib_size: NDArray[np.int64]
    results: list


def _check_chunk(block: NDArray, rows: slice, cols: slice, kernel: Callable | None):
    problems = _CountProblems.of(block)
    if problems.nan or problems.inf or problems.non_integer or problems.minimum < 0:
        return problems, None, None
    counts = block.astype(np.int64, copy=False)
    return problems, counts.sum(axis=1), None if kernel is None else kernel(counts, rows, cols)


def _scan(x: Any, what: str, kernel: Callable | None = None) -> LazyCounts:
    grid = map_chunks(lambda b, r, c: _check_chunk(b, r, c, kernel), x)
    _CountProblems.merge([cell[0] for row in grid for cell in row]).raise_any(what)
    lib = sum_rows(grid, x.shape[0], lambda cell: cell[1]).astype(np.int64)
    results = [[cell[2] for cell in row] for row in grid] if kernel is not None else []
    return LazyCounts(x, lib, results)


def scan_counts(
    adata: AnnData,
    layer: str | None = "counts",
    kernel: Callable[[NDArray[np.int64], slice, slice], Any] | None = None,
    *,
    check_empty: bool = True,
) -> LazyCounts:
    """Check dask counts in one blockwise pass, running ``kernel`` on each chunk in the same pass.

    Each stored chunk is read once, checked (finite, non-negative integers), turned into ``int64`` and given to
    ``kernel(block, rows, cols)``; nothing but small per-chunk results comes back. Raises as
    :func:`check_counts` does (and, when ``check_empty``, for samples with all-zero counts), before anything is
    written to ``adata``. A matrix that is not a dask array is wrapped as one block per :func:`block_size`
    samples, so the same code serves NumPy counts.
    """
    x = get_matrix(adata, layer, lazy=True)
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    _check_count_dtype(x, where)
    if is_sparse(x):
        x = x.tocsr()
    out = _scan(x, where, kernel)
    if check_empty:
        check_no_empty_samples(out.lib_size[:, None], adata.obs_names)
    return out


def get_counts(
    adata: AnnData, layer: str | None = "counts", *, dense: bool = True, lazy: bool = False
) -> NDArray | sparse.spmatrix:
    """Fetch and validate raw counts from ``adata`` (samples x genes).

    Returns a new dense ``int64`` array when ``dense`` (the default), else the stored matrix itself. With
    ``lazy``, dask counts (and a backed ``X``) are checked blockwise in one pass and returned as the dask array,
    never loaded; other matrices are handled as without it.
    """
    x = get_matrix(adata, layer, lazy=lazy)
    if lazy and is_dask(x):
        where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
        _check_count_dtype(x, where)
        return _scan(x, where).x
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


def obs_table(adata: AnnData) -> pd.DataFrame:
    """``adata.obs`` as a pandas DataFrame: a lazy one (``anndata.experimental.read_lazy``) is read, not kept."""
    obs = adata.obs
    return obs if isinstance(obs, pd.DataFrame) else obs.to_memory()


def check_obs_key(adata: AnnData, key: str) -> pd.Series:
    """Return ``adata.obs[key]`` (as a pandas Series) or raise a ``KeyError`` listing the available columns."""
    obs = obs_table(adata)
    if key not in obs.columns:
        raise KeyError(f"`adata.obs[{key!r}]` not found; available columns: {list(obs.columns)}")
    return obs[key]


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
