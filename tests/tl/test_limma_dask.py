"""tl.limma_voom and tl.ttest on dask counts (issue 15 item 1): blockwise, equal to the in-memory results.

Each number is computed from the same rows or columns as in memory (TMM from whole samples, voom and the fits
from whole genes, the t-test per gene); only the block a BLAS call sees changes shape, which may move the last
bit of a dot product: the tolerance is 1e-12 relative (measured: bit-identical here).
"""

import numpy as np
import pandas as pd
import pytest

import gendex as gdx

da = pytest.importorskip("dask.array", reason="dask is an optional dependency (pip install gendex[dask])")

CHUNKS = (7, 33)
#: on the cluster, fewer (still uneven) chunks: each task costs a round trip there, and the uneven cut is
#: already covered on threads
CLUSTER_CHUNKS = (13, 77)


@pytest.fixture(scope="module")
def memory():
    a = gdx.datasets.simulate_counts(n_samples=40, n_genes=300, random_state=0)
    a.obs["batch"] = np.tile(["x", "y", "z", "w"], 10)
    a.layers["log2"] = np.log2(a.layers["counts"] + 1.0)
    a.layers["log2"][3, 7] = np.nan  # a missing value: the t-test skips it
    return a


def lazy_copy(a, chunks=CHUNKS):
    out = a.copy()
    for k in ("counts", "log2"):
        out.layers[k] = da.from_array(a.layers[k], chunks=chunks)
    return out


def assert_results_equal(mem, lazy, key):
    left, right = mem.varm[key], lazy.varm[key]
    assert list(left.columns) == list(right.columns) and list(left.index) == list(right.index)
    for col in left.columns:
        np.testing.assert_allclose(right[col], left[col], rtol=1e-12, atol=0, err_msg=col)
    for k in ("s2_prior", "df_prior", "norm_factors", "lib_size"):
        if k in mem.uns[key]:
            np.testing.assert_allclose(lazy.uns[key][k], mem.uns[key][k], rtol=1e-12, err_msg=k)


RUNS = {
    "limma_voom": lambda a: gdx.tl.limma_voom(a, design="~condition"),
    "limma_voom_batch": lambda a: gdx.tl.limma_voom(a, design="~batch + condition", contrast=["condition", "B", "A"]),
    "limma_voom_no_tmm": lambda a: gdx.tl.limma_voom(a, normalization="none", key_added="lv"),
    "ttest": lambda a: gdx.tl.ttest(a, contrast=["condition", "B", "A"], layer="log2"),
    "ttest_welch": lambda a: gdx.tl.ttest(
        a, groupby="condition", group1="A", group2="B", layer="log2", equal_var=False
    ),
}


@pytest.mark.parametrize("name", RUNS)
def test_lazy_equals_in_memory(memory, dask_scheduler, name):
    mem, lazy = memory.copy(), lazy_copy(memory, CHUNKS if dask_scheduler is None else CLUSTER_CHUNKS)
    RUNS[name](mem)
    RUNS[name](lazy)
    key = next(iter(set(mem.varm) - set(memory.varm)))
    assert_results_equal(mem, lazy, key)
    assert isinstance(lazy.layers["counts"], da.Array)
    if name.startswith("limma"):
        voom_m, voom_l = mem.uns[key]["voom"], lazy.uns[key]["voom"]
        for k in voom_m:
            np.testing.assert_allclose(voom_l[k], voom_m[k], rtol=1e-12, err_msg=k)


def test_bad_input_leaves_adata_unchanged(memory, unchanged):
    lazy = lazy_copy(memory)
    counts = memory.layers["counts"].astype(np.float64)
    counts[35, 290] = -2
    lazy.layers["counts"] = da.from_array(counts, chunks=CHUNKS)
    values = memory.layers["log2"].copy()
    values[20, 100] = np.inf
    lazy.layers["log2"] = da.from_array(values, chunks=CHUNKS)
    check = unchanged(lazy)
    with pytest.raises(ValueError, match=r"`adata.layers\['counts'\]`: contains negative values"):
        gdx.tl.limma_voom(lazy)
    with pytest.raises(KeyError, match="nope"):
        gdx.tl.limma_voom(lazy, design="~nope")
    with pytest.raises(ValueError, match=r"`adata.layers\['log2'\]` contains infinite values"):
        gdx.tl.ttest(lazy, contrast=["condition", "B", "A"], layer="log2")
    check()


def test_ttest_warns_on_lazy_raw_counts(memory):
    lazy = lazy_copy(memory)
    with pytest.warns(UserWarning, match="looks like raw counts"):
        gdx.tl.ttest(lazy, contrast=["condition", "B", "A"], layer="counts")
    mem = memory.copy()
    with pytest.warns(UserWarning, match="looks like raw counts"):
        gdx.tl.ttest(mem, contrast=["condition", "B", "A"], layer="counts")
    pd.testing.assert_frame_equal(lazy.varm["ttest"], mem.varm["ttest"], rtol=1e-12)


def test_read_lazy_zarr_obs_read_once(memory, tmp_path):
    import warnings

    from anndata.experimental import read_lazy

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)  # anndata's note on its zarr default
        memory.write_zarr(tmp_path / "a.zarr")
    lazy = read_lazy(tmp_path / "a.zarr")
    assert not isinstance(lazy.obs, pd.DataFrame)  # anndata's lazy obs (xarray-backed)
    mem = memory.copy()
    for a in (mem, lazy):
        gdx.tl.limma_voom(a, design="~batch + condition", contrast=["condition", "B", "A"])
        gdx.tl.ttest(a, contrast=["condition", "B", "A"], layer="log2")
    assert_results_equal(mem, lazy, "limma_voom")
    assert_results_equal(mem, lazy, "ttest")
