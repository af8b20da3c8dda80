"""Validation for ``tl.deseq2``: every argument checked, and the request built, before any computation or write."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._design import ResolvedContrast, design_factors, design_matrix, prepare_obs, resolve_contrast
from .._lazy import is_dask, sum_cols
from .._utils import contrast_key
from .._validation import (
    check_no_empty_samples,
    check_not_backed,
    check_unique_names,
    get_counts,
    get_matrix,
    obs_table,
    scan_counts,
)
from ..stats._deseq2._backend import check_device

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from pydeseq2.inference import Inference

_COEF_RE = re.compile(r"^(?P<factor>.+)\[T\.(?P<level>.+)\]$")


@dataclass
class _Request:
    """Everything ``deseq2`` needs, validated before any computation or write."""

    counts: NDArray[np.int64]
    obs: pd.DataFrame  # the design factors only: categoricals (first category = reference) or floats
    var_names: pd.Index
    design: str
    design_df: pd.DataFrame
    test: str
    contrasts: list[list[str]]  # [factor, test, ref] per result; for the LRT the LFC column's contrast
    vectors: list[NDArray[np.float64]]  # contrast vectors over design_df's columns
    masks: list[tuple[NDArray[np.bool_], NDArray[np.bool_]] | None]  # test/reference samples of factor contrasts
    comparisons: list[list[str] | None]  # [factor, test, reference] of factor contrasts, else None
    contrast_given: bool  # False: the default contrast (the design's last coefficient)
    keys: list[str]
    reduced: str | None
    reduced_df: pd.DataFrame | None
    shrink_coefs: list[str | None]
    inference: str | Inference
    params: dict[str, Any]
    n_cpus: int
    nonzero_genes: NDArray[np.bool_] | None = None  # dask counts: genes with a non-zero count, from the one scan


@dataclass
class _Outcome:
    """What one DESeq2 run produced, ready to be written into the AnnData."""

    size_factors: NDArray[np.float64]
    var_columns: dict[str, NDArray[np.float64]]
    tables: list[pd.DataFrame]  # one per key, indexed by var_names, columns RESULT_COLUMNS (+ unshrunk)
    fit_info: dict[str, Any] = field(default_factory=dict)  # trend coefficients, prior variance, ...
    result_info: list[dict[str, Any]] = field(default_factory=list)  # per key


def _validate(
    adata: AnnData,
    *,
    design: str,
    contrast: Any,
    layer: str | None,
    alpha: float,
    cooks_filter: bool,
    independent_filter: bool,
    test: str,
    reduced: str | None,
    shrink: str | None,
    inference: Any,
    svalue: bool = False,
    fit_type: str,
    min_replicates: int,
    refit_cooks: bool,
    n_cpus: int | None,
    device: str,
    key_added: Any,
) -> _Request:
    from pydeseq2.inference import Inference

    check_not_backed(adata)
    check_unique_names(adata)
    if test not in ("wald", "lrt"):
        raise ValueError(f"`test` must be 'wald' or 'lrt', got {test!r}")
    if not isinstance(inference, Inference) and inference not in ("batched", "pydeseq2"):
        raise ValueError(
            f"`inference` must be 'batched', 'pydeseq2' or a pydeseq2.inference.Inference instance, got {inference!r}"
        )
    if shrink not in (None, "normal", "ashr", "apeglm"):
        raise ValueError(f"`shrink` must be None, 'normal', 'ashr' or 'apeglm', got {shrink!r}")
    if not isinstance(svalue, bool):
        raise TypeError(f"`svalue` must be True or False, got {svalue!r}")
    if svalue and shrink != "ashr":
        raise ValueError("`svalue=True` adds ashr's s-values: it needs shrink='ashr'")
    if shrink == "normal" and inference != "batched":
        raise ValueError("shrink='normal' runs on the batched engine's fit: use inference='batched'")
    if fit_type not in ("parametric", "mean", "local"):
        raise ValueError(f"`fit_type` must be 'parametric', 'mean' or 'local', got {fit_type!r}")
    if fit_type == "local" and inference != "batched":
        raise ValueError("fit_type='local' is only available with inference='batched'")
    if not (isinstance(alpha, float | int) and 0 < alpha < 1):
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha!r}")
    if not isinstance(min_replicates, int | np.integer) or min_replicates < 1:
        raise ValueError(f"`min_replicates` must be a positive integer, got {min_replicates!r}")
    if n_cpus is not None and (not isinstance(n_cpus, int | np.integer) or n_cpus < 1):
        raise ValueError(f"`n_cpus` must be None or a positive integer, got {n_cpus!r}")
    if str(device) != "cpu" and inference != "batched":
        raise ValueError(f"`device` ({device!r}) is only used by inference='batched'")
    check_device(device)

    matrix = get_matrix(adata, layer)
    nonzero_genes = None
    if is_dask(matrix):
        counts, nonzero_genes = _lazy_counts(adata, layer, inference=inference, shrink=shrink, device=device)
    else:
        counts = get_counts(adata, layer)
        check_no_empty_samples(counts, adata.obs_names)

    obs_df = obs_table(adata)  # a lazy obs (anndata.experimental.read_lazy) is read here
    design_df = design_matrix(obs_df, design)
    factors = design_factors(obs_df, design)
    obs = prepare_obs(obs_df, factors)
    design_df.index = adata.obs_names.copy()
    obs.index = adata.obs_names.copy()

    reduced_df = None
    if test == "lrt":
        if reduced is None:
            raise ValueError("`test='lrt'` needs a `reduced` design nested in `design`, e.g. reduced='~1'")
        if shrink is not None:
            raise ValueError("`shrink` applies to Wald contrasts; it cannot be combined with test='lrt'")
        reduced_df = _reduced_design(obs_df, design, design_df, reduced)
    elif reduced is not None:
        raise ValueError(f"`reduced` ({reduced!r}) is only used with test='lrt'; got test={test!r}")

    resolved = _normalise_contrasts(contrast, design, design_df, obs, factors, test=test)
    contrasts = [r.label for r in resolved]
    vectors = [r.vector for r in resolved]
    if len({tuple(c) for c in contrasts}) < len(contrasts):
        raise ValueError(f"duplicate contrasts in {contrasts}")

    shrink_coefs: list[str | None] = [None] * len(contrasts)
    if shrink == "apeglm":
        shrink_coefs = [_shrink_coefficient(r, design_df, obs, relevel=inference == "batched") for r in resolved]
    if shrink == "normal":
        for r in resolved:
            if r.comparison is None:
                raise ValueError(
                    f"shrink='normal' shrinks a [factor, test_level, reference_level] contrast (R's lfcShrink "
                    f"refuses numeric contrasts without a results table); got {r.label}; use shrink='ashr'"
                )

    keys = _result_keys(key_added, contrasts, test=test)

    if isinstance(inference, str):
        inference_name = inference
    else:
        inference_name = type(inference).__name__
    params = {
        "layer": "X" if layer is None else layer,
        "alpha": float(alpha),
        "cooks_filter": bool(cooks_filter),
        "independent_filter": bool(independent_filter),
        "test": test,
        "reduced": reduced,
        "shrink": shrink,
        "svalue": bool(svalue),
        "inference": inference_name,
        "fit_type": fit_type,
        "min_replicates": int(min_replicates),
        "refit_cooks": bool(refit_cooks),
        "n_cpus": n_cpus if n_cpus is not None or inference != "pydeseq2" else _available_cpus(),
        "device": str(device),
    }
    return _Request(
        counts=counts,
        obs=obs,
        var_names=adata.var_names.copy(),
        design=design,
        design_df=design_df,
        test=test,
        contrasts=contrasts,
        vectors=vectors,
        masks=[r.masks for r in resolved],
        comparisons=[r.comparison for r in resolved],
        contrast_given=contrast is not None,
        keys=keys,
        reduced=reduced,
        reduced_df=reduced_df,
        shrink_coefs=shrink_coefs,
        inference=inference,
        params=params,
        n_cpus=int(n_cpus) if n_cpus is not None else _available_cpus(),
        nonzero_genes=nonzero_genes,
    )


def _lazy_counts(
    adata: AnnData, layer: str | None, *, inference: Any, shrink: Any, device: str
) -> tuple[Any, NDArray[np.bool_]]:
    """Dask counts checked blockwise (integers, no empty sample) for the batched engine; never loaded.

    Also which genes have a non-zero count, found in the same pass, so the engine does not scan them again.
    """
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    load = f"load them first (`{where[1:-1]} = {where[1:-1]}.compute()`)"
    if not isinstance(inference, str) or inference != "batched":
        raise ValueError(
            f"{where} is a dask array, and PyDESeq2 (inference={inference!r}) holds the counts as one NumPy array in "
            f"memory: use inference='batched' (the default), which computes on the dask blocks, or {load}"
        )
    if shrink in ("normal", "apeglm"):
        raise ValueError(
            f"shrink={shrink!r} refits the counts in memory, and {where} is a dask array: use shrink='ashr', which "
            f"needs only the results table, or {load}"
        )
    if str(device) != "cpu":
        raise ValueError(
            f"{where} is a dask array: its blocks are fitted on the dask scheduler's CPUs, so device={device!r} is not "
            f"supported; use device='cpu', or {load}"
        )

    # one pass over the stored chunks: integers, no empty sample, and the genes with a non-zero count
    scan = scan_counts(adata, layer, _any_nonzero)
    nonzero = sum_cols(scan.results, scan.x.shape[1]) > 0
    return scan.x, nonzero


def _any_nonzero(block: NDArray[np.int64], rows: slice, cols: slice) -> NDArray[np.int64]:
    """Per gene of a chunk: 1 if it has a non-zero count (added over the row chunks by ``sum_cols``)."""
    return (block != 0).any(axis=0).astype(np.int64)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _coefficient_contrast(name: str, obs: pd.DataFrame) -> list[str] | None:
    """``[factor, level, reference]`` for a treatment-coded coefficient name ``"factor[T.level]"``, else None."""
    m = _COEF_RE.match(name)
    if m is None:
        return None
    factor, level = m.group("factor"), m.group("level")
    if factor not in obs.columns or not isinstance(obs[factor].dtype, pd.CategoricalDtype):
        return None
    return [factor, level, str(obs[factor].cat.categories[0])]


def _is_numeric_vector(c: Any) -> bool:
    if isinstance(c, np.ndarray):
        return c.ndim == 1 and np.issubdtype(c.dtype, np.number)
    return (
        isinstance(c, Sequence)
        and not isinstance(c, str)
        and len(c) > 0
        and all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in c)
    )


def _is_factor_form(c: Any, factors: list[str]) -> bool:
    return (
        isinstance(c, Sequence)
        and not isinstance(c, str)
        and len(c) == 3
        and isinstance(c[0], str)
        and c[0] in factors
        and not any(isinstance(v, list | tuple) for v in c)
    )


def _is_list_form(c: Any, factors: list[str]) -> bool:
    return (
        isinstance(c, Sequence)
        and not isinstance(c, str)
        and len(c) in (1, 2)
        and all(isinstance(v, list | tuple) and all(isinstance(n, str) for n in v) for v in c)
        and not all(_is_factor_form(v, factors) for v in c)
    )


def _normalise_contrasts(
    contrast: Any, design: str, design_df: pd.DataFrame, obs: pd.DataFrame, factors: list[str], *, test: str
) -> list[ResolvedContrast]:
    if contrast is None:
        last = str(design_df.columns[-1])
        default = _coefficient_contrast(last, obs)
        if default is None:
            raise ValueError(
                f"the last coefficient of {design!r} ({last!r}) is not a factor level; pass `contrast=` "
                "as [factor, test_level, reference_level], a coefficient name or a numeric vector"
            )
        return [resolve_contrast(design_df, obs, default)]
    if isinstance(contrast, str) or _is_numeric_vector(contrast) or _is_list_form(contrast, factors):
        items = [contrast]
    elif _is_factor_form(contrast, factors):
        items = [contrast]
    elif isinstance(contrast, Sequence) and len(contrast) == 3 and isinstance(contrast[0], str):
        items = [contrast]  # [factor, test, ref] whose factor is not in the design: resolve says so below
    elif isinstance(contrast, Sequence):
        items = list(contrast)
    else:
        raise TypeError(
            "`contrast` must be [factor, test_level, reference_level], a coefficient name, a numeric vector over "
            f"the design columns, [[numerator names], [denominator names]] or a list of these; got {contrast!r}"
        )
    if len(items) == 0:
        raise ValueError("`contrast` is an empty list")
    out = []
    for c in items:
        if isinstance(c, Sequence) and not isinstance(c, str) and len(c) == 3 and isinstance(c[0], str):
            if not _is_list_form(c, factors) and c[0] not in factors:
                raise ValueError(f"contrast factor {c[0]!r} is not in the design {design!r} (factors: {factors})")
        out.append(resolve_contrast(design_df, obs, c))
    if test == "lrt" and len(out) > 1:
        raise ValueError(
            f"test='lrt' gives one result; pass at most one contrast (it only picks the reported LFC), "
            f"got {[r.label for r in out]}"
        )
    return out


def _shrink_coefficient(r: ResolvedContrast, design_df: pd.DataFrame, obs: pd.DataFrame, *, relevel: bool) -> str:
    """The coefficient apeGLM shrinks: ``factor[T.level]``, after re-levelling the factor when ``relevel``."""
    if r.comparison is None:
        raise ValueError(
            f"shrink='apeglm' shrinks one coefficient of a [factor, level, reference] contrast; got {r.label}; "
            "use shrink='ashr' for other contrasts"
        )
    factor, level, ref = r.comparison
    first = str(obs[factor].cat.categories[0])
    coef = f"{factor}[T.{level}]"
    if ref == first and coef in design_df.columns:
        return coef
    if relevel and f"{factor}[T.{ref}]" in design_df.columns:
        return coef  # refitted with `ref` as the reference level, as R users re-level for apeglm
    raise ValueError(
        f"shrink='apeglm' shrinks one coefficient, so the contrast must be [factor, level, reference] with the "
        f"reference level of {factor!r} ({first!r}); got {list(r.comparison)}. Reorder the categories of "
        f"`obs[{factor!r}]` to make the reference level first, or use inference='batched' (which re-levels)."
    )


def _reduced_design(obs: pd.DataFrame, design: str, design_df: pd.DataFrame, reduced: str) -> pd.DataFrame:
    if not isinstance(reduced, str):
        raise TypeError(f"`reduced` must be a formula string such as '~celltype', got {reduced!r}")
    red_factors = design_factors(obs, reduced)
    full_factors = design_factors(obs, design)
    extra = [f for f in red_factors if f not in full_factors]
    if extra:
        raise ValueError(f"the reduced design {reduced!r} uses {extra}, which are not in the full design {design!r}")
    red = design_matrix(obs, reduced)
    red.index = design_df.index
    missing = [c for c in red.columns if c not in design_df.columns]
    if missing or red.shape[1] >= design_df.shape[1]:
        raise ValueError(
            f"the reduced design {reduced!r} (coefficients {list(red.columns)}) is not nested in the full design "
            f"{design!r} (coefficients {list(design_df.columns)}): it must keep a strict subset of them"
        )
    return red


def _label_key(prefix: str, label: list[str]) -> str:
    """Default key of a coefficient-name, list or numeric contrast: the label with only safe characters."""
    text = "_".join(label)
    return f"{prefix}_" + re.sub(r"[^0-9A-Za-z_.+-]+", "_", text).strip("_")


def _result_keys(key_added: Any, contrasts: list[list[str]], *, test: str) -> list[str]:
    if len(contrasts) == 1:
        if key_added is None:
            keys = ["deseq2_lrt" if test == "lrt" else "deseq2"]
        elif isinstance(key_added, str):
            keys = [key_added]
        else:
            keys = [str(k) for k in key_added]
    elif key_added is None or isinstance(key_added, str):
        prefix = "deseq2" if key_added is None else key_added
        keys = [contrast_key(prefix, c) if len(c) == 3 else _label_key(prefix, c) for c in contrasts]
    else:
        keys = [str(k) for k in key_added]
    if len(keys) != len(contrasts):
        raise ValueError(f"`key_added` has {len(keys)} names for {len(contrasts)} contrasts")
    if len(set(keys)) < len(keys):
        raise ValueError(f"the result keys {keys} are not unique; pass `key_added` as a list of distinct names")
    return keys
