"""pp on dask counts (issue 15 item 1): blockwise results equal the in-memory ones, on threads and on a cluster.

The counts are cut in odd chunks (7 x 33 on 40 x 300) so that no chunk lines up with a block. Tolerances:
integer summaries (library sizes, detected genes, filters) are exact; per-element transforms (log-CPM, log2)
and the size factors (geometric means over blocks of whole genes, medians over blocks of whole samples) run
the same float64 operations on the same numbers as in memory, so they are exact too (1e-14 on the transforms
leaves room for dask fusing an expression). The VST's gene-wise dispersions are Newton iterations run on
other batches of genes than in memory, which moves their last bits (measured ~3e-15): 1e-12.
"""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx

da = pytest.importorskip("dask.array", reason="dask is an optional dependency (pip install gendex[dask])")
distributed = pytest.importorskip("distributed")

CHUNKS = (7, 33)
#: on the cluster, fewer (still uneven) chunks: each task costs a round trip there, and the uneven cut is
#: already covered on threads
CLUSTER_CHUNKS = (13, 77)


@pytest.fixture(scope="module")
def memory():
    a = gdx.datasets.simulate_counts(n_samples=40, n_genes=300, random_state=0)
    a.layers["counts"] = a.layers["counts"].astype(np.int32)
    a.X = a.layers["counts"].astype(np.float64)
    a.obs["sf"] = np.linspace(0.8, 1.25, a.n_obs)
    return a


def lazy_copy(a, chunks=CHUNKS):
    out = a.copy()
    out.layers["counts"] = da.from_array(a.layers["counts"], chunks=chunks)
    out.X = da.from_array(np.asarray(a.X), chunks=chunks)
    return out


def assert_same(mem, lazy, *, rtol=0.0):
    """Same obs/var/uns (numbers to ``rtol``) and same layers; the new layers of ``lazy`` are still dask."""
    assert mem.shape == lazy.shape
    assert list(mem.var_names) == list(lazy.var_names)
    for frame in ("obs", "var"):
        left, right = getattr(mem, frame), getattr(lazy, frame)
        assert list(left.columns) == list(right.columns)
        for col in left.columns:
            if pd.api.types.is_float_dtype(left[col]):
                np.testing.assert_allclose(right[col], left[col], rtol=rtol, atol=0, err_msg=col)
            else:
                pd.testing.assert_series_equal(left[col], right[col])
    assert set(mem.uns) == set(lazy.uns)
    for k in mem.uns:
        assert str(mem.uns[k]) == str(lazy.uns[k]) or rtol > 0, k
    for k in mem.layers:
        if k in ("counts",):
            continue
        assert isinstance(lazy.layers[k], da.Array), k
        np.testing.assert_allclose(lazy.layers[k].compute(), mem.layers[k], rtol=rtol, atol=rtol, err_msg=k)


RUNS = {
    "qc_metrics": (lambda a: gdx.pp.qc_metrics(a), 0.0),
    "qc_metrics_X": (lambda a: gdx.pp.qc_metrics(a, layer=None), 0.0),
    "filter_genes": (lambda a: gdx.pp.filter_genes(a, min_total_count=200, min_samples=30, min_count=3), 0.0),
    "filter_by_expr": (lambda a: gdx.pp.filter_by_expr(a, group="condition"), 0.0),
    "filter_by_expr_flag": (lambda a: gdx.pp.filter_by_expr(a, subset=False, min_count=60), 0.0),
    "size_factors": (lambda a: gdx.pp.size_factors(a), 0.0),
    "size_factors_poscounts": (lambda a: gdx.pp.size_factors(a, method="poscounts", layer=None), 0.0),
    "log_cpm": (lambda a: gdx.pp.log_cpm(a), 1e-14),
    "log2_normalize": (lambda a: gdx.pp.log2_normalize(a, layer="counts"), 1e-14),
    "filter_missing": (lambda a: gdx.pp.filter_missing(a, max_missing=0.5), 0.0),
    "vst": (lambda a: gdx.pp.vst(a, nsub=100), 1e-12),
    "vst_all_genes_design": (lambda a: gdx.pp.vst(a, nsub=None, blind=False, design="~condition"), 1e-12),
    "vst_local": (lambda a: gdx.pp.vst(a, nsub=None, fit_type="local"), 1e-12),
    "vst_mean_sf": (lambda a: gdx.pp.vst(a, nsub=None, fit_type="mean", size_factor_key="sf"), 1e-12),
}


@pytest.mark.parametrize("name", RUNS)
def test_lazy_equals_in_memory(memory, dask_scheduler, name):
    run, rtol = RUNS[name]
    mem, lazy = memory.copy(), lazy_copy(memory, CHUNKS if dask_scheduler is None else CLUSTER_CHUNKS)
    run(mem)
    run(lazy)
    assert_same(mem, lazy, rtol=rtol)
    assert isinstance(lazy.layers["counts"], da.Array)  # never loaded, subsets included


def test_filter_subsets_lazily_and_chains(memory):
    lazy = lazy_copy(memory)
    gdx.pp.filter_by_expr(lazy, group="condition")
    gdx.pp.size_factors(lazy)
    gdx.pp.log_cpm(lazy)
    mem = memory.copy()
    for step in (lambda a: gdx.pp.filter_by_expr(a, group="condition"), gdx.pp.size_factors, gdx.pp.log_cpm):
        step(mem)
    assert isinstance(lazy.X, da.Array) and lazy.n_vars == mem.n_vars < memory.n_vars
    assert_same(mem, lazy, rtol=0.0)


def test_log_cpm_layer_stays_lazy_and_streams_to_zarr(memory, tmp_path):
    lazy = lazy_copy(memory)
    gdx.pp.log_cpm(lazy)
    layer = lazy.layers["log_cpm"]
    assert layer.chunks == lazy.layers["counts"].chunks  # blockwise: one output chunk per input chunk
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)  # anndata's note on its zarr default
        lazy.write_zarr(tmp_path / "out.zarr")
    back = ad.read_zarr(tmp_path / "out.zarr")
    mem = memory.copy()
    gdx.pp.log_cpm(mem)
    np.testing.assert_allclose(back.layers["log_cpm"], mem.layers["log_cpm"], rtol=1e-14)


def test_read_lazy_zarr_and_backed_h5ad(memory, tmp_path):
    from anndata.experimental import read_lazy

    mem = memory.copy()
    gdx.pp.qc_metrics(mem, layer=None)
    gdx.pp.size_factors(mem, layer=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)
        memory.write_zarr(tmp_path / "a.zarr")
    memory.write_h5ad(tmp_path / "a.h5ad")
    lazy = read_lazy(tmp_path / "a.zarr")
    gdx.pp.qc_metrics(lazy, layer=None)
    gdx.pp.size_factors(lazy, layer=None)
    gdx.pp.filter_by_expr(lazy, group="condition", subset=False)  # a column of the lazy obs
    gdx.pp.vst(lazy, blind=False, design="~condition", nsub=None)
    assert isinstance(lazy.layers["vst"], da.Array)
    np.testing.assert_array_equal(np.asarray(lazy.obs["library_size"]), mem.obs["library_size"])
    np.testing.assert_allclose(np.asarray(lazy.obs["size_factors"]), mem.obs["size_factors"], rtol=0)
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    try:
        gdx.pp.qc_metrics(backed, layer=None)
        gdx.pp.size_factors(backed, layer=None)
        gdx.pp.filter_genes(backed, layer=None, subset=False)
        pd.testing.assert_series_equal(backed.obs["library_size"], mem.obs["library_size"])
        np.testing.assert_allclose(backed.obs["size_factors"], mem.obs["size_factors"], rtol=0)
        with pytest.raises(ValueError, match="cannot be subset in place.*subset=False"):
            gdx.pp.filter_genes(backed, layer=None)
    finally:
        backed.file.close()


BAD = {
    "NaN": (np.nan, r"NaN values"),
    "infinite": (np.inf, r"infinite values"),
    "non-integer": (2.5, r"non-integer values \(e\.g\. \[2\.5\]\)"),
    "negative": (-3.0, r"negative values \(min -3\.0\)"),
}


@pytest.mark.parametrize("problem", BAD)
@pytest.mark.parametrize("name", ["qc_metrics", "filter_genes", "filter_by_expr", "size_factors", "log_cpm"])
def test_bad_counts_found_blockwise_adata_unchanged(memory, unchanged, problem, name):
    value, message = BAD[problem]
    bad = memory.layers["counts"].astype(np.float64)
    bad[33, 250] = value  # in the last row chunk, far from the first
    lazy = lazy_copy(memory)
    lazy.layers["counts"] = da.from_array(bad, chunks=CHUNKS)
    check = unchanged(lazy)
    with pytest.raises(ValueError, match=rf"`adata.layers\['counts'\]`: contains {message}"):
        RUNS[name][0](lazy)
    check()


@pytest.mark.parametrize("name", ["qc_metrics", "filter_genes", "filter_by_expr", "size_factors", "log_cpm"])
def test_bad_counts_in_x_too(memory, name):
    # the functions above read layer="counts"; with layer=None they read the bad X
    bad = np.asarray(memory.X, dtype=np.float64) + 0.25
    lazy = lazy_copy(memory)
    lazy.X = da.from_array(bad, chunks=CHUNKS)
    funcs = {
        "qc_metrics": gdx.pp.qc_metrics,
        "filter_genes": gdx.pp.filter_genes,
        "filter_by_expr": gdx.pp.filter_by_expr,
        "size_factors": gdx.pp.size_factors,
        "log_cpm": gdx.pp.log_cpm,
    }
    with pytest.raises(ValueError, match="`adata.X`: contains non-integer"):
        funcs[name](lazy, layer=None)


def test_empty_sample_and_all_zero_genes_refused(memory, unchanged):
    counts = memory.layers["counts"].copy()
    counts[5] = 0
    lazy = lazy_copy(memory)
    lazy.layers["counts"] = da.from_array(counts, chunks=CHUNKS)
    check = unchanged(lazy)
    for func in (gdx.pp.size_factors, gdx.pp.log_cpm, gdx.pp.filter_by_expr):
        with pytest.raises(ValueError, match=r"all-zero counts: \['sample_?0*5'\]|all-zero counts: \[.*\]"):
            func(lazy)
    check()
    zeros = memory.layers["counts"].copy()
    zeros[np.arange(300) % 40, np.arange(300)] = 0  # a zero in every gene
    lazy.layers["counts"] = da.from_array(zeros, chunks=CHUNKS)
    with pytest.raises(ValueError, match="every gene has a zero.*poscounts"):
        gdx.pp.size_factors(lazy)
    gdx.pp.size_factors(lazy, method="poscounts")


def test_distributed_run_is_quiet_and_errors_alike(memory, dask_cluster, capfd, caplog, unchanged):
    lazy = lazy_copy(memory, CLUSTER_CHUNKS)
    bad = lazy_copy(memory, CLUSTER_CHUNKS)
    negative = np.where(np.eye(40, 300) > 0, -1, memory.layers["counts"])
    bad.layers["counts"] = da.from_array(negative, chunks=CLUSTER_CHUNKS)
    check = unchanged(bad)
    with distributed.Client(dask_cluster):
        with pytest.raises(ValueError, match=r"`adata.layers\['counts'\]`: contains negative values \(min -1\)"):
            gdx.pp.size_factors(bad)
        check()
        capfd.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gdx.pp.qc_metrics(lazy)
            gdx.pp.size_factors(lazy)
            gdx.pp.log_cpm(lazy)
        out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert not [r for r in caplog.records if r.name.startswith("gendex")]


def test_rlog_needs_memory_and_says_how(memory, unchanged):
    lazy = lazy_copy(memory)
    check = unchanged(lazy)
    with pytest.raises(ValueError, match=r"dask array.*pp.rlog needs it in memory.*to_memory\(\).*read_lazy"):
        gdx.pp.rlog(lazy)
    check()
