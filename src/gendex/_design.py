"""Design formulas and contrasts shared by the count-based DE methods (DESeq2, limma-voom).

A design is a formulaic/patsy-style string over ``obs`` columns (``"~celltype + status"``); categorical
factors use treatment coding with the first category as reference, so coefficient names look like
``"celltype[T.luminal]"`` (the names PyDESeq2 uses too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray


def design_factors(obs: pd.DataFrame, design: str) -> list[str]:
    """The ``obs`` columns a design formula uses; raises a ``KeyError`` naming unknown ones."""
    from formulaic import Formula

    if not isinstance(design, str) or not design.strip().startswith("~"):
        raise ValueError(f"`design` must be a formula string such as '~condition', got {design!r}")
    try:
        variables = sorted(str(v) for v in Formula(design).required_variables)
    except Exception as err:
        raise ValueError(f"cannot parse the design formula {design!r}: {err}") from err
    unknown = [v for v in variables if v not in obs.columns]
    if unknown:
        raise KeyError(f"design {design!r} uses unknown `obs` column(s) {unknown}; available: {list(obs.columns)}")
    return variables


def prepare_obs(obs: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Copy of ``obs[factors]`` with string/bool columns as categoricals (unused levels dropped), NaN refused."""
    out = pd.DataFrame(index=obs.index.astype(str))
    for col in factors:
        values = obs[col]
        if values.isna().any():
            raise ValueError(f"`obs[{col!r}]` has missing values; the design needs every sample annotated")
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.cat.remove_unused_categories()
        elif not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            values = pd.Series(
                pd.Categorical(values.astype(str), categories=sorted(values.astype(str).unique())), index=obs.index
            )
        if isinstance(values.dtype, pd.CategoricalDtype):
            if len(values.cat.categories) < 2:
                raise ValueError(
                    f"factor `obs[{col!r}]` has a single level ({list(values.cat.categories)}): "
                    "it cannot be in a design"
                )
            out[col] = pd.Categorical(np.asarray(values), categories=values.cat.categories)
        else:
            out[col] = values.to_numpy(dtype=np.float64)
    return out


def design_matrix(obs: pd.DataFrame, design: str) -> pd.DataFrame:
    """Model matrix of ``design`` over ``obs`` (samples x coefficients), checked to have full column rank.

    Raises
    ------
    KeyError
        A column the formula names is not in ``obs``.
    ValueError
        A factor has a single level, a value is missing, or the design is rank deficient (confounded factors).
    """
    from formulaic import model_matrix

    factors = design_factors(obs, design)
    data = prepare_obs(obs, factors)
    try:
        mm = model_matrix(design, data)
    except Exception as err:
        raise ValueError(f"cannot build the design matrix of {design!r}: {err}") from err
    x = pd.DataFrame(np.asarray(mm, dtype=np.float64), index=data.index, columns=[str(c) for c in mm.columns])
    if x.shape[1] == 0:
        raise ValueError(f"the design {design!r} has no coefficients")
    rank = np.linalg.matrix_rank(x.to_numpy())
    if rank < x.shape[1]:
        raise ValueError(
            f"the design {design!r} is rank deficient (rank {rank} < {x.shape[1]} coefficients {list(x.columns)}): "
            "some factors are confounded or a level combination is missing"
        )
    if x.shape[0] <= x.shape[1]:
        raise ValueError(
            f"the design {design!r} has {x.shape[1]} coefficients for {x.shape[0]} samples: no residual degrees of "
            "freedom"
        )
    x.attrs["design"] = design
    x.attrs["model_spec"] = mm.model_spec
    x.attrs["factors"] = factors
    return x


def _level_rows(design: pd.DataFrame, obs: pd.DataFrame, factor: str, levels: Sequence[object]) -> np.ndarray:
    """Design rows of virtual samples at ``levels`` of ``factor``.

    Every other factor sits at its reference level and every continuous covariate at 0, as R's
    ``contrast = c(factor, test, ref)`` does: the effect at the reference of the other factors, so interaction
    terms drop out.
    """
    spec = design.attrs["model_spec"]
    factors = design.attrs["factors"]
    data = prepare_obs(obs, factors)
    virtual = {}
    for col in factors:
        values = data[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            cats = values.cat.categories
            vals = list(levels) if col == factor else [cats[0]] * len(levels)
            virtual[col] = pd.Categorical(vals, categories=cats)
        else:
            virtual[col] = np.zeros(len(levels))
    rows = spec.get_model_matrix(pd.DataFrame(virtual))
    return np.asarray(rows, dtype=np.float64)


def contrast_vector(design: pd.DataFrame, obs: pd.DataFrame, contrast: Sequence[object]) -> NDArray[np.float64]:
    """Contrast vector over the columns of ``design`` for ``[factor, test_level, reference_level]``.

    The difference of the design rows of the two levels with every other factor at its reference level: under
    treatment coding ``coef[test] - coef[ref]`` (the reference level has no coefficient), in a cell-means design
    (``"~0 + group"``) ``group[test] - group[ref]``; interaction terms with other factors drop out, as in R.
    Levels may be given as numbers (``["batch", 2, 1]``); they are matched to the level names as text.
    """
    if isinstance(contrast, str) or len(contrast) != 3:
        raise ValueError(f"`contrast` must be [factor, test_level, reference_level], got {contrast!r}")
    factor, test, ref = (str(c) for c in contrast)
    if factor not in obs.columns:
        raise KeyError(f"contrast factor {factor!r} is not an `obs` column; available: {list(obs.columns)}")
    values = obs[factor]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and not isinstance(values.dtype, pd.CategoricalDtype):
        raise ValueError(
            f"contrast factor {factor!r} is numeric, so a design treats it as a continuous covariate; make it "
            f"categorical first: adata.obs[{factor!r}] = adata.obs[{factor!r}].astype('category')"
        )
    levels = values.astype(str).unique().tolist()
    for level in (test, ref):
        if level not in levels:
            raise ValueError(f"contrast level {level!r} does not exist in `obs[{factor!r}]`; levels: {sorted(levels)}")
    if test == ref:
        raise ValueError(f"contrast compares level {test!r} with itself")
    cols = list(design.columns)
    factors = design.attrs.get("factors")
    if factors is None or "model_spec" not in design.attrs:  # a plain matrix: treatment-coded names
        vec = np.zeros(design.shape[1])
        for level, sign in ((test, 1.0), (ref, -1.0)):
            name = f"{factor}[T.{level}]"
            if name in cols:
                vec[cols.index(name)] += sign
    elif factor not in factors:
        vec = np.zeros(design.shape[1])
    else:
        cats = prepare_obs(obs, [factor])[factor].cat.categories
        by_name = {str(c): c for c in cats}
        rows = _level_rows(design, obs, factor, [by_name[test], by_name[ref]])
        vec = rows[0] - rows[1]
    if not np.any(vec != 0):
        raise ValueError(
            f"contrast {list(contrast)} matches no coefficient of the design {cols}; is {factor!r} in the design?"
        )
    return vec


def coefficient_vector(design: pd.DataFrame, names: str | Sequence[str], *, what: str = "contrast") -> np.ndarray:
    """Indicator vector of the design columns ``names`` (R's ``name =``), with a clear error for unknown ones."""
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    cols = [str(c) for c in design.columns]
    unknown = [n for n in names if n not in cols]
    if unknown:
        raise ValueError(f"{what} names {unknown}, which are not columns of the design; its columns are {cols}")
    vec = np.zeros(len(cols))
    for n in names:
        vec[cols.index(n)] = 1.0
    return vec


class ResolvedContrast(NamedTuple):
    """A contrast turned into a vector over the design columns."""

    vector: np.ndarray  #: weights over the design columns (natural-log coefficients)
    label: list[str]  #: how the result names it: [factor, test, reference], [coefficient] or ["numeric", ...]
    comparison: list[str] | None  #: [factor, test, reference] for the factor form, else None
    masks: tuple[np.ndarray, np.ndarray] | None  #: samples at the test / reference level (factor form)


def resolve_contrast(
    design: pd.DataFrame, obs: pd.DataFrame, contrast: object, *, list_values: tuple[float, float] = (1.0, -1.0)
) -> ResolvedContrast:
    """Any of R DESeq2's contrast forms as a vector over the columns of ``design`` (from :func:`design_matrix`).

    - ``[factor, test_level, reference_level]`` (levels may be numbers, matched as text);
    - a column name of the design, e.g. ``"a[T.Y]:b[T.Q]"`` (R's ``name =``);
    - a numeric vector with one weight per design column (R's numeric contrast);
    - ``[[numerator names], [denominator names]]`` (R's list contrast: numerator columns weighted
      ``list_values[0]``, denominator columns ``list_values[1]``; either list may be empty).
    """
    cols = [str(c) for c in design.columns]
    if isinstance(contrast, str):
        return ResolvedContrast(coefficient_vector(design, contrast), [contrast], None, None)
    if isinstance(contrast, np.ndarray) or (
        isinstance(contrast, Sequence)
        and len(contrast) > 0
        and all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in contrast)
    ):
        vec = np.asarray(contrast, dtype=np.float64).ravel()
        if vec.size != len(cols):
            raise ValueError(
                f"a numeric contrast needs one weight per design column ({len(cols)}: {cols}), got {vec.size}"
            )
        if not np.all(np.isfinite(vec)) or np.all(vec == 0):
            raise ValueError("a numeric contrast must be finite and not all zero")
        return ResolvedContrast(vec, ["numeric", *(f"{v:g}" for v in vec)], None, None)
    if not isinstance(contrast, Sequence) or len(contrast) == 0:
        raise ValueError(
            "`contrast` must be [factor, test_level, reference_level], a design column name, a numeric vector over "
            f"the design columns or [[numerator names], [denominator names]]; got {contrast!r}"
        )
    items = list(contrast)
    if len(items) in (1, 2) and all(isinstance(v, list | tuple) for v in items):
        num = [str(v) for v in items[0]]
        den = [str(v) for v in items[1]] if len(items) == 2 else []
        if not num and not den:
            raise ValueError("a list contrast needs at least one coefficient name")
        overlap = set(num) & set(den)
        if overlap:
            raise ValueError(f"a list contrast names {sorted(overlap)} in both the numerator and the denominator")
        vec = np.zeros(len(cols))
        if num:
            vec += list_values[0] * coefficient_vector(design, num, what="the list contrast")
        if den:
            vec += list_values[1] * coefficient_vector(design, den, what="the list contrast")
        return ResolvedContrast(vec, ["+".join(num) or "0", "-".join(den) or "0"], None, None)
    if len(items) == 3 and isinstance(items[0], str):
        factor, test, ref = items[0], str(items[1]), str(items[2])
        vec = contrast_vector(design, obs, [factor, test, ref])
        levels = obs[factor].astype(str).to_numpy()
        return ResolvedContrast(vec, [factor, test, ref], [factor, test, ref], (levels == test, levels == ref))
    raise ValueError(
        "`contrast` must be [factor, test_level, reference_level], a design column name, a numeric vector over the "
        f"design columns or [[numerator names], [denominator names]]; got {contrast!r}"
    )
