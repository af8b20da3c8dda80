"""Bad input across `gdx.pp` (issue 2 item 8): each raises naming the problem and leaves the AnnData unchanged;
sparse `X`/layers give the same results as dense; backed AnnData cannot be copied."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import gendex as gdx

# every pp function that needs raw counts, called the way a user would
COUNT_FUNCS = {
    "qc_metrics": lambda a, **kw: gdx.pp.qc_metrics(a, **kw),
    "filter_genes": lambda a, **kw: gdx.pp.filter_genes(a, **kw),
    "filter_by_expr": lambda a, **kw: gdx.pp.filter_by_expr(a, group="condition", **kw),
    "size_factors": lambda a, **kw: gdx.pp.size_factors(a, **kw),
    "log_cpm": lambda a, **kw: gdx.pp.log_cpm(a, **kw),
}
# the functions that take any non-negative values (the classroom data)
VALUE_FUNCS = {
    "filter_missing": lambda a, **kw: gdx.pp.filter_missing(a, **kw),
    "log2_normalize": lambda a, **kw: gdx.pp.log2_normalize(a, **kw),
}
ALL_FUNCS = {**COUNT_FUNCS, **VALUE_FUNCS}


def set_counts(adata, values):
    adata.layers["counts"] = values
    adata.X = values.copy()


BAD_COUNTS = {
    "negative": lambda c: np.where(np.eye(*c.shape) > 0, -3, c),
    "non-integer": lambda c: c + 0.5,
    "NaN": lambda c: np.where(np.eye(*c.shape) > 0, np.nan, c),
    "infinite": lambda c: np.where(np.eye(*c.shape) > 0, np.inf, c),
}


@pytest.mark.parametrize("name", COUNT_FUNCS)
@pytest.mark.parametrize("problem", BAD_COUNTS)
@pytest.mark.parametrize("as_sparse", [False, True])
def test_bad_counts(adata, unchanged, name, problem, as_sparse):
    bad = BAD_COUNTS[problem](adata.layers["counts"].astype(np.float64))
    set_counts(adata, sparse.csr_matrix(bad) if as_sparse else bad)
    check = unchanged(adata)
    with pytest.raises(ValueError, match=f"adata.layers\\['counts'\\].*{problem}"):
        COUNT_FUNCS[name](adata)
    check()


@pytest.mark.parametrize("name", COUNT_FUNCS)
def test_bad_counts_in_x(adata, unchanged, name):
    adata.X = adata.X + 0.25
    check = unchanged(adata)
    with pytest.raises(ValueError, match=r"`adata.X`.*non-integer"):
        COUNT_FUNCS[name](adata, layer=None)
    check()


@pytest.mark.parametrize("name", ["filter_by_expr", "size_factors", "log_cpm"])
def test_all_zero_sample(adata, unchanged, name):
    counts = adata.layers["counts"].copy()
    counts[3] = 0
    set_counts(adata, counts)
    check = unchanged(adata)
    with pytest.raises(ValueError, match=r"all-zero counts: \['sample_03'\]"):
        COUNT_FUNCS[name](adata)
    check()


@pytest.mark.parametrize("name", ["qc_metrics", "filter_genes"])
def test_all_zero_sample_is_reported_not_refused_by_qc(adata, name):
    adata.layers["counts"][3] = 0
    COUNT_FUNCS[name](adata)
    if name == "qc_metrics":
        assert adata.obs["library_size"].iloc[3] == 0


@pytest.mark.parametrize("name", ALL_FUNCS)
def test_missing_layer(adata, unchanged, name):
    check = unchanged(adata)
    with pytest.raises(KeyError, match=r"`adata.layers\['raw'\]` not found; available: \['counts'\]"):
        ALL_FUNCS[name](adata, layer="raw")
    check()


@pytest.mark.parametrize("name", ALL_FUNCS)
@pytest.mark.parametrize("axis", ["obs", "var"])
def test_duplicate_names(adata, unchanged, name, axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata warns about non-unique names itself
        names = list(getattr(adata, f"{axis}_names"))
        names[2] = names[1]
        setattr(adata, f"{axis}_names", names)
        check = unchanged(adata)
    what = "obs_names \\(samples\\)" if axis == "obs" else "var_names \\(genes\\)"
    with pytest.raises(ValueError, match=f"duplicate {what}: \\['{names[1]}'\\]"):
        ALL_FUNCS[name](adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check()


@pytest.mark.parametrize("name", ALL_FUNCS)
@pytest.mark.parametrize("empty", ["genes", "samples"])
def test_empty_matrix(adata, unchanged, name, empty):
    small = adata[:, :0].copy() if empty == "genes" else adata[:0].copy()
    check = unchanged(small)
    with pytest.raises(ValueError, match="`adata` is empty"):
        ALL_FUNCS[name](small)
    check()


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda a: gdx.pp.filter_by_expr(a, group="nope"), KeyError, r"`adata.obs\['nope'\]` not found"),
        (lambda a: gdx.pp.log_cpm(a, norm_factors_key="tmm"), KeyError, r"`adata.obs\['tmm'\]` not found"),
        (lambda a: gdx.pp.log2_normalize(a, size_factor_key="sf"), KeyError, r"`adata.obs\['sf'\]` not found"),
        (lambda a: gdx.pp.filter_missing(a, max_missing=1.5), ValueError, "max_missing"),
        (lambda a: gdx.pp.size_factors(a, method="tmm"), ValueError, "'ratio' or 'poscounts'"),
        (lambda a: gdx.pp.log_cpm(a, prior_count=-1), ValueError, "prior_count"),
        (lambda a: gdx.pp.log2_normalize(a, pseudocount=-1), ValueError, "pseudocount"),
        (lambda a: gdx.pp.log2_normalize(a, pseudocount=0), ValueError, "zeros.*positive `pseudocount`"),
        (lambda a: gdx.pp.filter_genes(a, min_total_count=10**12), ValueError, "no gene passes"),
        (lambda a: gdx.pp.size_factors(a, copy=True, inplace=False), ValueError, "copy"),
    ],
)
def test_bad_arguments(adata, unchanged, call, err, match):
    check = unchanged(adata)
    with pytest.raises(err, match=match):
        call(adata)
    check()


@pytest.mark.parametrize("value", [0.0, -1.0, np.nan, np.inf])
def test_bad_size_factor_columns(adata, unchanged, value):
    adata.obs["sf"] = 1.0
    adata.obs.loc["sample_02", "sf"] = value
    check = unchanged(adata)
    with pytest.raises(ValueError, match=r"`adata.obs\['sf'\]` must hold finite positive numbers.*'sample_02'"):
        gdx.pp.log2_normalize(adata, layer="counts", size_factor_key="sf")
    with pytest.raises(ValueError, match=r"`adata.obs\['sf'\]` must hold finite positive"):
        gdx.pp.log_cpm(adata, norm_factors_key="sf")
    check()


def test_group_with_missing_values(adata, unchanged):
    adata.obs["grp"] = pd.Categorical(["a", "a", "b", None, "b", "a", "b", "a"])
    check = unchanged(adata)
    with pytest.raises(ValueError, match=r"`adata.obs\['grp'\]` has missing values for samples \['sample_03'\]"):
        gdx.pp.filter_by_expr(adata, group="grp")
    check()


def test_log2_normalize_refuses_negative_and_infinite_values(unchanged):
    shift = gdx.datasets.simulate_shift(n_samples=10, n_genes=20, seed=0)
    for value, match in ((-1.0, "negative"), (np.inf, "infinite")):
        bad = shift.copy()
        bad.X[0, 0] = value
        check = unchanged(bad)
        with pytest.raises(ValueError, match=f"`adata.X` contains {match}"):
            gdx.pp.log2_normalize(bad)
        check()


# --- sparse X and layers work wherever dense do ---------------------------------------------------


def _all_slots_equal(a, b):
    def dense(m):
        return m.toarray() if sparse.issparse(m) else np.asarray(m)

    assert a.shape == b.shape
    assert list(a.var_names) == list(b.var_names)
    np.testing.assert_allclose(dense(a.X), dense(b.X))
    assert set(a.layers) == set(b.layers)
    for k in a.layers:
        np.testing.assert_allclose(dense(a.layers[k]), dense(b.layers[k]), equal_nan=True)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.uns.keys() == b.uns.keys()
    for k in a.uns:
        _assert_same(a.uns[k], b.uns[k])


def _assert_same(x, y):
    # uns holds parameters (scalars, lists, dicts) and tables (e.g. pp.filter_missing's per-gene summary)
    if isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys()
        for k in x:
            _assert_same(x[k], y[k])
    elif isinstance(x, pd.DataFrame):
        pd.testing.assert_frame_equal(x, y)
    elif isinstance(x, np.ndarray):
        np.testing.assert_array_equal(x, y)
    else:
        assert x == y


@pytest.mark.parametrize("name", COUNT_FUNCS)
@pytest.mark.parametrize("where", ["layer", "X"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_equals_dense_counts(adata, name, where, fmt):
    adata.layers["counts"][:, :5] = 0  # some structural zeros
    adata.X = adata.layers["counts"].copy()
    dense = adata.copy()
    sp = adata.copy()
    to_sparse = sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix
    layer = "counts" if where == "layer" else None
    if where == "layer":
        sp.layers["counts"] = to_sparse(sp.layers["counts"])
    else:
        sp.X = to_sparse(sp.X)
    COUNT_FUNCS[name](dense, layer=layer)
    COUNT_FUNCS[name](sp, layer=layer)
    _all_slots_equal(dense, sp)


@pytest.mark.parametrize("name", VALUE_FUNCS)
def test_sparse_equals_dense_values(name):
    shift = gdx.datasets.simulate_shift(n_samples=10, n_genes=20, missing_p=0.2, seed=3)
    shift.X[:, :3] = 0
    shift.X[:9, 4] = np.nan
    sp = shift.copy()
    sp.X = sparse.csr_matrix(sp.X)
    kw = {"max_missing": 0.5} if name == "filter_missing" else {}
    VALUE_FUNCS[name](shift, **kw)
    VALUE_FUNCS[name](sp, **kw)
    _all_slots_equal(shift, sp)
    if name == "filter_missing":
        assert "gene_0004" not in shift.var_names


# --- backed AnnData -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FUNCS)
def test_backed_anndata_copy_is_refused(adata, tmp_path, name):
    # pp reads a backed X lazily (tests/pp/test_dask.py), but anndata copies a backed AnnData only to a file
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        with pytest.raises(ValueError, match=r"backed AnnData.*read_lazy"):
            ALL_FUNCS[name](backed, copy=True)
        assert list(backed.obs.columns) == list(adata.obs.columns)
        assert backed.n_vars == adata.n_vars
    finally:
        backed.file.close()
