"""Design formulas and contrasts shared by the count-based DE methods (DESeq2, limma-voom).

A design is a formulaic/patsy-style string over ``obs`` columns (``"~celltype + status"``); categorical
factors use treatment coding with the first category as reference, so coefficient names look like
``"celltype[T.luminal]"`` (the names PyDESeq2 uses too).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    mm = model_matrix(design, data)
    x = pd.DataFrame(np.asarray(mm, dtype=np.float64), index=data.index, columns=[str(c) for c in mm.columns])
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
    return x


def contrast_vector(design: pd.DataFrame, obs: pd.DataFrame, contrast: Sequence[str]) -> NDArray[np.float64]:
    """Contrast vector over the columns of ``design`` for ``[factor, test_level, reference_level]``.

    Under treatment coding, ``test - ref`` is ``coef[test] - coef[ref]`` where the factor's first level has
    no coefficient.
    """
    if isinstance(contrast, str) or len(contrast) != 3:
        raise ValueError(f"`contrast` must be [factor, test_level, reference_level], got {contrast!r}")
    factor, test, ref = (str(c) for c in contrast)
    if factor not in obs.columns:
        raise KeyError(f"contrast factor {factor!r} is not an `obs` column; available: {list(obs.columns)}")
    levels = obs[factor].astype(str).unique().tolist()
    for level in (test, ref):
        if level not in levels:
            raise ValueError(f"contrast level {level!r} does not exist in `obs[{factor!r}]`; levels: {sorted(levels)}")
    if test == ref:
        raise ValueError(f"contrast compares level {test!r} with itself")
    vec = np.zeros(design.shape[1])
    cols = list(design.columns)
    found = False
    for level, sign in ((test, 1.0), (ref, -1.0)):
        name = f"{factor}[T.{level}]"
        if name in cols:
            vec[cols.index(name)] += sign
            found = True
    if not found:
        raise ValueError(
            f"contrast {list(contrast)} matches no coefficient of the design {list(cols)}; is {factor!r} in the design?"
        )
    return vec
