"""``gdx.get.design_matrix``: the model matrix a design formula gives, with the column names contrasts use."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .._design import design_matrix as _design_matrix


def design_matrix(adata: AnnData, design: str) -> pd.DataFrame:
    """The design matrix that ``tl.deseq2`` and ``tl.limma_voom`` fit for ``design`` (samples x coefficients).

    Its column names are the names that contrasts refer to: a coefficient name (``contrast="a[T.Y]:b[T.Q]"``),
    a list contrast (``contrast=[["group[YQ]"], ["group[XQ]"]]``) or the positions of a numeric contrast (one
    weight per column, in this order). Categorical factors use treatment coding with the first category as
    reference (``"factor[T.level]"``); a design without intercept (``"~0 + group"``) has one column per level
    (``"group[level]"``); interactions are ``"a[T.Y]:b[T.Q]"``; a continuous covariate is one column named after
    it. String and boolean columns become categoricals with their levels in sorted order; set a column's
    categories to choose the reference level. ``adata`` is not modified.

    Parameters
    ----------
    adata
        Annotated data; ``obs`` holds the factors of the design.
    design
        Formula over ``obs`` columns, e.g. ``"~celltype + status"``, ``"~0 + group"``, ``"~a + b + a:b"``,
        ``"~age + condition"``; names with spaces as ``"~Q('cell type')"``.

    Returns
    -------
    DataFrame indexed by ``obs_names``, one float column per coefficient.

    Raises
    ------
    KeyError
        The formula names a column that is not in ``obs``.
    ValueError
        The formula cannot be parsed, a factor has one level or missing values, the design is rank deficient,
        or it leaves no residual degrees of freedom.

    Examples
    --------
    >>> import gendex as gdx
    >>> ad = gdx.datasets.simulate_counts(n_samples=8, n_genes=50, random_state=0)
    >>> list(gdx.get.design_matrix(ad, "~0 + condition").columns)
    ['condition[A]', 'condition[B]']
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"`adata` must be an AnnData, got {type(adata).__name__}")
    x = _design_matrix(adata.obs, design)
    x.index = adata.obs_names.copy()
    x.attrs.clear()
    x.attrs["design"] = design
    return x
