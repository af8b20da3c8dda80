"""Private helpers: results storage, h5ad-safe parameters, package versions."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._validation import check_string_names

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger("gendex")

#: The columns every DE result in ``varm`` carries (DESeq2's names).
DE_COLUMNS = ("baseMean", "log2FoldChange", "stat", "pvalue", "padj")


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of ``gendex`` and the named packages (h5ad-safe dict of str)."""
    return {name: _version(name) for name in ("gendex", *names)}


@functools.cache
def _version(name: str) -> str:
    # importlib.metadata scans the environment's distributions on every call (ms each); versions do not change
    # within a process
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def h5ad_safe(value: Any) -> Any:
    """Convert ``value`` into something ``write_h5ad``/``write_zarr`` store and read back with the same values.

    ``None`` becomes the string ``"None"``; mappings are converted recursively (keys become strings); tuples,
    Series, Index and arrays of strings become lists; a list mixing ints and floats becomes floats and one
    mixing other kinds becomes strings (anndata would do that on writing, so the list in memory is already what
    the file gives back); a list of lists becomes a dict keyed ``"0"``, ``"1"``...; numpy scalars become
    Python scalars; numeric arrays and DataFrames are kept as they are; anything else becomes its ``str``.

    Lists stay lists in memory, but h5ad and zarr have no list type: anndata reads a list back as a 1-D numpy
    array holding the same elements (``list(value)`` or ``value.tolist()`` gives the list again).
    """
    if value is None:
        return "None"
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series | pd.Index):
        return h5ad_safe(value.tolist())
    if isinstance(value, list | tuple):
        items = [h5ad_safe(v) for v in value]
        if any(isinstance(v, list | dict | np.ndarray | pd.DataFrame) for v in items):
            return {str(i): v for i, v in enumerate(items)}
        kinds = {type(v) for v in items}
        if len(kinds) > 1:
            items = [float(v) for v in items] if kinds <= {int, float} else [str(v) for v in items]
        return items
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biuf" else value.astype(str).tolist()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def store_de_results(
    adata: AnnData,
    key_added: str,
    results: pd.DataFrame,
    *,
    method: str,
    params: Mapping[str, Any],
    packages: tuple[str, ...] = (),
    **extra: Any,
) -> None:
    """Write a DE table into ``adata.varm[key_added]`` and its run record into ``adata.uns[key_added]``.

    ``results`` must be indexed by (a subset of) ``adata.var_names``; genes absent from it get NaN. The
    columns of :data:`DE_COLUMNS` are required. Extra keyword arguments (``design``, ``contrast``, ...)
    are stored beside ``method``/``params``/``versions`` in ``uns``.
    """
    check_string_names(adata)
    missing = [c for c in DE_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"DE results for {key_added!r} lack the columns {missing}")
    table = results.reindex(adata.var_names)
    table.index = adata.var_names.copy()
    table.columns = [str(c) for c in table.columns]
    for col in table.columns:
        if table[col].dtype == object:
            table[col] = table[col].fillna("").astype(str)
    adata.varm[key_added] = table
    record = {"method": method, "params": dict(params), "versions": package_versions(*packages), **extra}
    adata.uns[key_added] = h5ad_safe(record)


def contrast_key(prefix: str, contrast: tuple[str, str, str] | list[str]) -> str:
    """Default ``key_added`` for one contrast: ``f"{prefix}_{test}_vs_{ref}"``."""
    _factor, test, ref = contrast
    return f"{prefix}_{test}_vs_{ref}"
