"""``tl.deseq2``: DESeq2 differential expression on an AnnData (batched engine or PyDESeq2)."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._design import contrast_vector, design_factors, design_matrix, prepare_obs
from .._utils import contrast_key, store_de_results
from .._validation import check_no_empty_samples, check_not_backed, check_unique_names, get_counts

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from pydeseq2.inference import Inference

logger = logging.getLogger(__name__)

#: Columns of every DESeq2 table in ``varm`` (DESeq2's names, then gendex's ``na_reason``).
RESULT_COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "na_reason")
#: The values ``na_reason`` takes.
NA_REASONS = ("", "all_zero", "cooks_outlier", "independent_filtering")

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
    contrast_given: bool  # False: the default contrast (the design's last coefficient)
    keys: list[str]
    reduced: str | None
    reduced_df: pd.DataFrame | None
    shrink_coefs: list[str | None]
    inference: str | Inference
    params: dict[str, Any]
    n_cpus: int


@dataclass
class _Outcome:
    """What one DESeq2 run produced, ready to be written into the AnnData."""

    size_factors: NDArray[np.float64]
    var_columns: dict[str, NDArray[np.float64]]
    tables: list[pd.DataFrame]  # one per key, indexed by var_names, columns RESULT_COLUMNS (+ unshrunk)
    fit_info: dict[str, Any] = field(default_factory=dict)  # trend coefficients, prior variance, ...
    result_info: list[dict[str, Any]] = field(default_factory=list)  # per key


def deseq2(
    adata: AnnData,
    design: str = "~condition",
    *,
    contrast: Sequence[str] | Sequence[Sequence[str]] | None = None,
    layer: str | None = "counts",
    alpha: float = 0.05,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    test: Literal["wald", "lrt"] = "wald",
    reduced: str | None = None,
    shrink: Literal["apeglm"] | None = None,
    inference: Literal["batched", "pydeseq2"] | Inference = "batched",
    fit_type: Literal["parametric", "mean", "local"] = "parametric",
    min_replicates: int = 7,
    refit_cooks: bool = True,
    n_cpus: int | None = None,
    device: str = "cpu",
    key_added: str | Sequence[str] | None = None,
    copy: bool = False,
) -> AnnData | None:
    """DESeq2 differential expression: size factors, dispersions, NB GLM, Wald test or likelihood-ratio test.

    The model is fitted once; each contrast is a Wald test on that fit (several contrasts reuse it). With
    ``test="lrt"`` the genes are tested with a likelihood-ratio test of the full ``design`` against the
    nested ``reduced`` design, as R's ``DESeq(dds, test="LRT", reduced=...)`` does.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts (non-negative integers, dense or sparse).
    design
        Formula over ``obs`` columns, e.g. ``"~celltype + status"``. Categorical factors use treatment coding
        with the first category (alphabetical for strings) as reference.
    contrast
        ``[factor, test_level, reference_level]``, or a list of them. The factor must be in ``design``.
        None tests the last coefficient of the design (R's default), e.g. ``["condition", "B", "A"]``. With
        ``test="lrt"`` at most one contrast may be given; it only chooses which log2 fold change (and SE) is
        reported beside the LRT statistic (default: the last coefficient, as R does).
    layer
        Layer with the raw counts; None means ``X``.
    alpha
        Significance level used by independent filtering (DESeq2's ``alpha``).
    cooks_filter
        Set the p-values of genes with a Cook's distance outlier to NaN (``na_reason="cooks_outlier"``).
    independent_filter
        Independent filtering of low-mean genes (their ``padj`` is NaN, ``na_reason="independent_filtering"``);
        when False, plain Benjamini-Hochberg over all tested genes.
    test
        ``"wald"`` (one result per contrast) or ``"lrt"`` (one result, needs ``reduced``).
    reduced
        Reduced design for the LRT, nested in ``design`` (its coefficients are a subset), e.g. ``"~celltype"``.
    shrink
        ``"apeglm"``: shrink the log2 fold changes with PyDESeq2's apeGLM (``DeseqStats.lfc_shrink``). Only for
        Wald contrasts of the form ``[factor, level, reference]`` where the reference is the factor's first
        level, i.e. a contrast that is a single coefficient. ``stat``/``pvalue``/``padj`` stay unshrunk.
        With ``inference="batched"`` the shrinkage still runs PyDESeq2's apeGLM code, on the batched fit.
    inference
        ``"batched"``: gendex's vectorised DESeq2 engine (:mod:`gendex.stats`), which follows R's DESeq2.
        ``"pydeseq2"``: PyDESeq2's ``DeseqDataSet``/``DeseqStats`` with its default inference. A
        :class:`pydeseq2.inference.Inference` instance: PyDESeq2 with that inference backend.
    fit_type
        Dispersion trend: ``"parametric"`` (``a0 + a1 / mean``), ``"mean"``, or ``"local"`` (batched engine only:
        an approximation of R's ``locfit`` trend).
    min_replicates
        Samples per group needed to replace Cook's outliers and refit (DESeq2's ``minReplicatesForReplace``).
    refit_cooks
        Replace Cook's outliers in groups with at least ``min_replicates`` samples and refit those genes.
    n_cpus
        Processes PyDESeq2 may use (``inference="pydeseq2"``). None means the CPUs available to this process.
        Ignored by the batched engine and by an ``Inference`` instance (configure that object yourself).
    device
        Where the batched engine computes: ``"cpu"`` (numpy), ``"torch"`` (torch on the CPU) or a torch device
        such as ``"cuda"``; always float64. Only used with ``inference="batched"``.
    key_added
        Where to store the results. One result: a name (default ``"deseq2"``, ``"deseq2_lrt"`` for the LRT).
        Several contrasts: a list with one name each, or a prefix (default ``"deseq2"``) giving
        ``f"{prefix}_{test_level}_vs_{reference_level}"``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Returns None, or the modified copy when ``copy=True``, and sets:

    ``adata.obs["size_factors"]``
        DESeq2 size factors (median of ratios).
    ``adata.var["dispersions"]``, ``["genewise_dispersions"]``, ``["fitted_dispersions"]``, ``["MAP_dispersions"]``
        Final, gene-wise (MLE), trend and maximum a posteriori dispersions (NaN for all-zero genes).
    ``adata.varm[key]`` (:class:`~pandas.DataFrame`, one per contrast)
        Indexed by ``var_names``, columns ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj`` (DESeq2's
        names; log2 scale) and ``na_reason`` (``""``, ``"all_zero"``, ``"cooks_outlier"``,
        ``"independent_filtering"``: why ``pvalue``/``padj`` is NaN). With ``shrink`` also
        ``log2FoldChange_unshrunk`` and ``lfcSE_unshrunk``. For the LRT ``stat`` is the LRT statistic.
    ``adata.uns[key]`` (dict)
        ``method`` (``"deseq2"``), ``inference``, ``design``, ``contrast``, ``test``, ``reduced``,
        ``params``, ``versions``, the dispersion ``trend_coeffs`` and ``prior_disp_var`` where available.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=300)
    >>> gdx.tl.deseq2(adata, "~condition", contrast=["condition", "B", "A"])  # doctest: +SKIP
    >>> gdx.get.de_results(adata, "deseq2").sort_values("padj").head()  # doctest: +SKIP
    """
    req = _validate(
        adata,
        design=design,
        contrast=contrast,
        layer=layer,
        alpha=alpha,
        cooks_filter=cooks_filter,
        independent_filter=independent_filter,
        test=test,
        reduced=reduced,
        shrink=shrink,
        inference=inference,
        fit_type=fit_type,
        min_replicates=min_replicates,
        refit_cooks=refit_cooks,
        n_cpus=n_cpus,
        device=device,
        key_added=key_added,
    )
    if req.inference == "batched":
        outcome = _run_batched(req)
    else:
        outcome = _run_pydeseq2(req)

    if copy:
        adata = adata.copy()
    _write(adata, req, outcome)
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------------
# validation


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
    if shrink not in (None, "apeglm"):
        raise ValueError(f"`shrink` must be None or 'apeglm', got {shrink!r}")
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

    counts = get_counts(adata, layer)
    check_no_empty_samples(counts, adata.obs_names)

    design_df = design_matrix(adata.obs, design)
    factors = design_factors(adata.obs, design)
    obs = prepare_obs(adata.obs, factors)
    design_df.index = adata.obs_names.copy()
    obs.index = adata.obs_names.copy()

    reduced_df = None
    if test == "lrt":
        if reduced is None:
            raise ValueError("`test='lrt'` needs a `reduced` design nested in `design`, e.g. reduced='~1'")
        if shrink is not None:
            raise ValueError("`shrink` applies to Wald contrasts; it cannot be combined with test='lrt'")
        reduced_df = _reduced_design(adata.obs, design, design_df, reduced)
    elif reduced is not None:
        raise ValueError(f"`reduced` ({reduced!r}) is only used with test='lrt'; got test={test!r}")

    contrasts = _normalise_contrasts(contrast, design, design_df, obs, factors, test=test)
    vectors = [contrast_vector(design_df, obs, c) for c in contrasts]
    if len({tuple(c) for c in contrasts}) < len(contrasts):
        raise ValueError(f"duplicate contrasts in {contrasts}")

    shrink_coefs: list[str | None] = [None] * len(contrasts)
    if shrink == "apeglm":
        shrink_coefs = [_shrink_coefficient(c, design_df, obs) for c in contrasts]

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
        contrast_given=contrast is not None,
        keys=keys,
        reduced=reduced,
        reduced_df=reduced_df,
        shrink_coefs=shrink_coefs,
        inference=inference,
        params=params,
        n_cpus=int(n_cpus) if n_cpus is not None else _available_cpus(),
    )


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


def _normalise_contrasts(
    contrast: Any, design: str, design_df: pd.DataFrame, obs: pd.DataFrame, factors: list[str], *, test: str
) -> list[list[str]]:
    if contrast is None:
        last = str(design_df.columns[-1])
        default = _coefficient_contrast(last, obs)
        if default is None:
            raise ValueError(
                f"the last coefficient of {design!r} ({last!r}) is not a factor level; pass `contrast=` "
                "as [factor, test_level, reference_level]"
            )
        return [default]
    if isinstance(contrast, str):
        raise TypeError(f"`contrast` must be [factor, test_level, reference_level] or a list of them, got {contrast!r}")
    items = list(contrast)
    if len(items) == 0:
        raise ValueError("`contrast` is an empty list")
    if all(isinstance(c, str) for c in items):
        items = [items]
    out = []
    for c in items:
        if isinstance(c, str) or not isinstance(c, Sequence) or len(c) != 3:
            raise ValueError(f"each contrast must be [factor, test_level, reference_level], got {c!r}")
        c = [str(v) for v in c]
        if c[0] not in factors:
            raise ValueError(f"contrast factor {c[0]!r} is not in the design {design!r} (factors: {factors})")
        if not isinstance(obs[c[0]].dtype, pd.CategoricalDtype):
            raise ValueError(f"contrast factor {c[0]!r} is numeric (continuous); contrasts need a categorical factor")
        out.append(c)
    if test == "lrt" and len(out) > 1:
        raise ValueError(
            f"test='lrt' gives one result; pass at most one contrast (it only picks the reported LFC), got {out}"
        )
    return out


def _shrink_coefficient(c: list[str], design_df: pd.DataFrame, obs: pd.DataFrame) -> str:
    factor, level, ref = c
    first = str(obs[factor].cat.categories[0])
    coef = f"{factor}[T.{level}]"
    if ref != first or coef not in design_df.columns:
        raise ValueError(
            f"shrink='apeglm' shrinks one coefficient, so the contrast must be [factor, level, reference] with the "
            f"reference level of {factor!r} ({first!r}); got {c}. Reorder the categories of `obs[{factor!r}]` "
            "to make the reference level first."
        )
    return coef


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
        keys = [contrast_key(prefix, c) for c in contrasts]
    else:
        keys = [str(k) for k in key_added]
    if len(keys) != len(contrasts):
        raise ValueError(f"`key_added` has {len(keys)} names for {len(contrasts)} contrasts")
    if len(set(keys)) < len(keys):
        raise ValueError(f"the result keys {keys} are not unique; pass `key_added` as a list of distinct names")
    return keys


# --------------------------------------------------------------------------------------------------------------
# NA reasons


def na_reasons(
    all_zero: NDArray[np.bool_], pvalue: NDArray[np.float64], padj: NDArray[np.float64]
) -> NDArray[np.object_]:
    """Why ``pvalue``/``padj`` is NaN: ``"all_zero"``, ``"cooks_outlier"``, ``"independent_filtering"`` or ``""``."""
    pvalue = np.asarray(pvalue, dtype=np.float64)
    padj = np.asarray(padj, dtype=np.float64)
    reason = np.full(pvalue.shape, "", dtype=object)
    reason[np.isnan(pvalue)] = "cooks_outlier"
    reason[np.isfinite(pvalue) & np.isnan(padj)] = "independent_filtering"
    reason[np.asarray(all_zero, dtype=bool)] = "all_zero"
    return reason


# --------------------------------------------------------------------------------------------------------------
# PyDESeq2 path


@contextmanager
def _pydeseq2_quiet() -> Iterator[None]:
    """Silence numpy's RuntimeWarnings raised inside PyDESeq2 code (overflow in exp, log of 0), nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"pydeseq2(\.|$)")
        yield


def _fit_pydeseq2(req: _Request) -> Any:
    """``DeseqDataSet(...).deseq2()`` on a new AnnData holding the validated counts and design factors."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference

    if isinstance(req.inference, str):
        inference = DefaultInference(n_cpus=req.n_cpus)
    else:
        inference = req.inference
    # A new AnnData: DeseqDataSet copies its __dict__ and writes into it (never the caller's object).
    fresh = AnnData(X=req.counts.copy(), obs=req.obs.copy(), var=pd.DataFrame(index=req.var_names.astype(str)))
    with _pydeseq2_quiet():
        dds = DeseqDataSet(
            adata=fresh,
            design=req.design,
            fit_type=req.params["fit_type"],
            refit_cooks=req.params["refit_cooks"],
            min_replicates=req.params["min_replicates"],
            inference=inference,
            quiet=True,
        )
        dds.deseq2()
    coef_names = [str(c) for c in dds.varm["LFC"].columns]
    if coef_names != list(req.design_df.columns):
        raise RuntimeError(
            f"PyDESeq2's coefficients {coef_names} differ from the design's {list(req.design_df.columns)}"
        )
    return dds


def _run_pydeseq2(req: _Request) -> _Outcome:
    from pydeseq2.ds import DeseqStats

    dds = _fit_pydeseq2(req)
    inference = dds.inference
    all_zero = req.counts.sum(axis=0) == 0
    tables: list[pd.DataFrame] = []
    infos: list[dict[str, Any]] = []
    if req.test == "wald":
        for contrast, coef in zip(req.contrasts, req.shrink_coefs, strict=True):
            with _pydeseq2_quiet():
                ds = DeseqStats(
                    dds,
                    contrast=list(contrast),
                    alpha=req.params["alpha"],
                    cooks_filter=req.params["cooks_filter"],
                    independent_filter=req.params["independent_filter"],
                    inference=inference,
                    quiet=True,
                )
                ds.summary()
            table = _pydeseq2_table(ds.results_df, all_zero)
            info: dict[str, Any] = {}
            if coef is not None:
                table = _apply_shrink(ds, coef, table)
                info["shrink_coefficient"] = coef
            tables.append(table)
            infos.append(info)
    else:
        table, info = _pydeseq2_lrt(req, dds, all_zero)
        tables.append(table)
        infos.append(info)

    fit_info: dict[str, Any] = {"disp_function_type": str(dds.uns.get("disp_function_type", req.params["fit_type"]))}
    if "trend_coeffs" in dds.uns:
        fit_info["trend_coeffs"] = {str(k): float(v) for k, v in dds.uns["trend_coeffs"].items()}
    if "mean_disp" in dds.uns:
        fit_info["mean_disp"] = float(dds.uns["mean_disp"])
    if "prior_disp_var" in dds.uns:
        fit_info["prior_disp_var"] = float(dds.uns["prior_disp_var"])
    var_columns = {
        name: dds.var[name].to_numpy(dtype=np.float64)
        for name in ("dispersions", "genewise_dispersions", "fitted_dispersions", "MAP_dispersions")
    }
    return _Outcome(
        size_factors=dds.obs["size_factors"].to_numpy(dtype=np.float64),
        var_columns=var_columns,
        tables=tables,
        fit_info=fit_info,
        result_info=infos,
    )


def _pydeseq2_table(results: pd.DataFrame, all_zero: NDArray[np.bool_]) -> pd.DataFrame:
    table = results[["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]].astype(np.float64).copy()
    table["na_reason"] = na_reasons(all_zero, table["pvalue"].to_numpy(), table["padj"].to_numpy())
    return table


def _apply_shrink(ds: Any, coef: str, table: pd.DataFrame) -> pd.DataFrame:
    """Run PyDESeq2's apeGLM on ``coef`` of a summarised ``DeseqStats``; keep the unshrunk columns beside."""
    unshrunk = table[["log2FoldChange", "lfcSE"]].to_numpy(copy=True)
    with _pydeseq2_quiet():
        # 0.5.4 warns (UserWarning) about genes whose shrinkage is not finite and keeps their MLE: log it instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", message=r".*during LFC shrinkage.*", category=UserWarning)
            ds.lfc_shrink(coef)
        for w in caught:
            if "during LFC shrinkage" in str(w.message):
                logger.warning("PyDESeq2 apeGLM: %s", w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    out = table.copy()
    out["log2FoldChange"] = ds.results_df["log2FoldChange"].to_numpy(dtype=np.float64)
    out["lfcSE"] = ds.results_df["lfcSE"].to_numpy(dtype=np.float64)
    out["log2FoldChange_unshrunk"] = unshrunk[:, 0]
    out["lfcSE_unshrunk"] = unshrunk[:, 1]
    return out


def _pydeseq2_lrt(req: _Request, dds: Any, all_zero: NDArray[np.bool_]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """LRT on PyDESeq2's fit: both GLMs refitted by the batched engine at PyDESeq2's size factors and dispersions.

    The log2 fold change and its SE come from PyDESeq2's Wald test of the reported contrast; Cook's filtering and
    independent filtering are PyDESeq2's (``DeseqStats``), applied to the LRT p-values.
    """
    from pydeseq2.ds import DeseqStats
    from scipy import stats

    sf = dds.obs["size_factors"].to_numpy(dtype=np.float64)
    disp = dds.var["dispersions"].to_numpy(dtype=np.float64)
    fitting_counts = req.counts.astype(np.float64)
    if "replaced" in dds.var and bool(dds.var["replaced"].any()) and hasattr(dds, "counts_to_refit"):
        replaced = np.flatnonzero(dds.var["replaced"].to_numpy(dtype=bool))
        fitting_counts[:, replaced] = np.asarray(dds.counts_to_refit.X, dtype=np.float64)
    ll_full = _glm_loglik(fitting_counts, req.design_df.to_numpy(), sf, disp)
    ll_red = _glm_loglik(fitting_counts, req.reduced_df.to_numpy(), sf, disp)
    df = req.design_df.shape[1] - req.reduced_df.shape[1]
    with np.errstate(invalid="ignore"):
        stat = 2.0 * (ll_full - ll_red)
        pvalue = stats.chi2.sf(stat, df)
    with _pydeseq2_quiet():
        ds = DeseqStats(
            dds,
            contrast=req.vectors[0],
            alpha=req.params["alpha"],
            cooks_filter=req.params["cooks_filter"],
            independent_filter=req.params["independent_filter"],
            inference=dds.inference,
            quiet=True,
        )
        ds.run_wald_test()
        ds.statistics = pd.Series(stat, index=dds.var_names)
        ds.p_values = pd.Series(pvalue, index=dds.var_names)
        ds.summary()  # keeps our p-values (no new Wald test), applies Cook's and independent filtering
    table = _pydeseq2_table(ds.results_df, all_zero)
    return table, {"lrt_df": int(df), "lrt_glm": "gendex batched engine at PyDESeq2's size factors and dispersions"}


def _glm_loglik(counts: NDArray, design: NDArray, size_factors: NDArray, dispersions: NDArray) -> NDArray:
    """Log-likelihood of the NB GLM of each gene at fixed dispersions, fitted by the batched engine."""
    from ..stats._deseq2._backend import single_threaded_blas
    from ..stats._deseq2._glm import _Ctx, fit_glm

    n, g = counts.shape
    out = np.full(g, np.nan)
    ok = np.flatnonzero((counts.sum(axis=0) > 0) & np.isfinite(dispersions))
    ctx = _Ctx(design, size_factors, min_mu=0.5, min_disp=1e-8, max_disp=10.0, beta_tol=1e-8, device="cpu")
    chunk = max(1, 4_000_000 // n)
    with np.errstate(all="ignore"), single_threaded_blas():
        for start in range(0, ok.size, chunk):
            idx = ok[start : start + chunk]
            out[idx] = ctx.np(fit_glm(ctx.t(counts[:, idx].T), ctx.t(dispersions[idx]), ctx).loglik)
    return out


# --------------------------------------------------------------------------------------------------------------
# batched engine path


def _run_batched(req: _Request) -> _Outcome:
    from ..stats._deseq2 import deseq2_fit, deseq2_lrt, deseq2_wald

    fit = deseq2_fit(
        req.counts,
        req.design_df.to_numpy(),
        coef_names=list(req.design_df.columns),
        fit_type=req.params["fit_type"],
        min_replicates=req.params["min_replicates"],
        refit_cooks=req.params["refit_cooks"],
        device=req.params["device"],
    )
    tests = {
        "alpha": req.params["alpha"],
        "cooks_filter": req.params["cooks_filter"],
        "independent_filter": req.params["independent_filter"],
    }
    tables: list[pd.DataFrame] = []
    infos: list[dict[str, Any]] = []
    for contrast, vec, coef in zip(req.contrasts, req.vectors, req.shrink_coefs, strict=True):
        info: dict[str, Any]
        if req.test == "lrt":
            table = deseq2_lrt(fit, req.reduced_df.to_numpy(), **tests)
            if req.contrast_given:  # R's results(dds, contrast=...) of an LRT fit: that contrast's LFC and SE
                wald = deseq2_wald(fit, vec, contrast_samples=_contrast_samples(req.obs, contrast), **tests)
                table["log2FoldChange"] = wald["log2FoldChange"].to_numpy()
                table["lfcSE"] = wald["lfcSE"].to_numpy()
            info = {**_filter_info(table), "lrt_df": int(table.attrs.get("df", 0))}
        else:
            table = deseq2_wald(fit, vec, contrast_samples=_contrast_samples(req.obs, contrast), **tests)
            info = _filter_info(table)
        table = pd.DataFrame({c: table[c].to_numpy() for c in RESULT_COLUMNS}, index=req.var_names)
        if coef is not None:
            table = _shrink_batched(req, fit, contrast, coef, table)
            info["shrink_coefficient"] = coef
            info["shrink_method"] = "PyDESeq2 DeseqStats.lfc_shrink (apeGLM) on the batched fit"
        tables.append(table)
        infos.append(info)

    fit_info: dict[str, Any] = {"disp_function_type": str(fit.fit_type), "prior_disp_var": float(fit.prior_disp_var)}
    coeffs = np.asarray(fit.trend_coeffs, dtype=np.float64).ravel()
    if coeffs.size == 2 and np.all(np.isfinite(coeffs)):
        fit_info["trend_coeffs"] = {"a0": float(coeffs[0]), "a1": float(coeffs[1])}
    fit_info["n_dispersion_outliers"] = int(np.nansum(fit.disp_outlier))
    fit_info["n_refitted"] = int(np.sum(fit.refitted))
    var_columns = {
        "dispersions": fit.dispersions,
        "genewise_dispersions": fit.genewise_dispersions,
        "fitted_dispersions": fit.fitted_dispersions,
        "MAP_dispersions": fit.map_dispersions,
    }
    return _Outcome(
        size_factors=np.asarray(fit.size_factors, dtype=np.float64),
        var_columns=var_columns,
        tables=tables,
        fit_info=fit_info,
        result_info=infos,
    )


def _contrast_samples(obs: pd.DataFrame, contrast: list[str]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    factor, test, ref = contrast
    values = obs[factor].astype(str).to_numpy()
    return values == test, values == ref


def _filter_info(table: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for name, key in (("filterThreshold", "filter_threshold"), ("filterTheta", "filter_theta")):
        value = table.attrs.get(name)
        if value is not None and np.isfinite(value):
            out[key] = float(value)
    return out


def _shrink_batched(req: _Request, fit: Any, contrast: list[str], coef: str, table: pd.DataFrame) -> pd.DataFrame:
    """PyDESeq2's apeGLM (``DeseqStats.lfc_shrink``) on a ``DeseqDataSet`` holding the batched engine's fit."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    inference = _shrink_inference(req)
    fresh = AnnData(X=req.counts.copy(), obs=req.obs.copy(), var=pd.DataFrame(index=req.var_names.astype(str)))
    with _pydeseq2_quiet():
        dds = DeseqDataSet(adata=fresh, design=req.design, refit_cooks=False, inference=inference, quiet=True)
    non_zero = ~np.asarray(fit.all_zero, dtype=bool)
    dds.obs["size_factors"] = np.asarray(fit.size_factors, dtype=np.float64)
    dds.var["_normed_means"] = np.asarray(fit.base_mean, dtype=np.float64)
    dds.var["dispersions"] = np.asarray(fit.dispersions, dtype=np.float64)
    dds.var["non_zero"] = non_zero
    dds.non_zero_idx = np.flatnonzero(non_zero)
    dds.non_zero_genes = dds.var_names[non_zero]
    dds.varm["LFC"] = pd.DataFrame(
        np.asarray(fit.beta, dtype=np.float64), index=dds.var_names, columns=list(req.design_df.columns)
    )
    ds = DeseqStats(
        dds,
        contrast=list(contrast),
        alpha=req.params["alpha"],
        cooks_filter=req.params["cooks_filter"],
        independent_filter=req.params["independent_filter"],
        inference=inference,
        quiet=True,
    )
    # the Wald results are the engine's; PyDESeq2 only shrinks the coefficient
    ds.SE = pd.Series(table["lfcSE"].to_numpy() * np.log(2), index=dds.var_names)
    ds.results_df = pd.DataFrame(
        {"log2FoldChange": table["log2FoldChange"].to_numpy(), "lfcSE": table["lfcSE"].to_numpy()},
        index=dds.var_names,
    )
    return _apply_shrink(ds, coef, table)


def _shrink_inference(req: _Request) -> Inference:
    try:
        from ..stats._deseq2 import BatchedInference  # type: ignore[attr-defined]
    except ImportError:
        from pydeseq2.default_inference import DefaultInference

        return DefaultInference(n_cpus=req.n_cpus)
    return BatchedInference()


# --------------------------------------------------------------------------------------------------------------
# writing


def _write(adata: AnnData, req: _Request, outcome: _Outcome) -> None:
    adata.obs["size_factors"] = np.asarray(outcome.size_factors, dtype=np.float64)
    for name, values in outcome.var_columns.items():
        adata.var[name] = np.asarray(values, dtype=np.float64)
    for key, contrast, table, info in zip(req.keys, req.contrasts, outcome.tables, outcome.result_info, strict=True):
        table = table.copy()
        table.index = req.var_names
        extra: dict[str, Any] = {
            "inference": req.params["inference"],
            "design": req.design,
            "design_columns": list(req.design_df.columns),
            "contrast": list(contrast),
            "test": req.test,
            "reduced": req.reduced,
            **outcome.fit_info,
            **info,
        }
        store_de_results(
            adata,
            key,
            table,
            method="deseq2",
            params=req.params,
            packages=("pydeseq2", "numpy", "scipy"),
            **extra,
        )
