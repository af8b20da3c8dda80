"""tl.deseq2 (batched engine) on dask counts: the same results as in memory, on threads and on a 2-worker cluster."""

import warnings

import numpy as np
import pandas as pd
import pytest

import gendex as gdx
import gendex._lazy as lazy
from gendex.stats._deseq2 import _fit, deseq2_fit

da = pytest.importorskip("dask.array", reason="dask is an optional dependency (pip install gendex[dask])")
ad_lazy = pytest.importorskip("anndata.experimental", reason="needs anndata.experimental.read_lazy")

#: fields of the fit compared bit for bit
FIT_FIELDS = (
    "size_factors",
    "base_mean",
    "base_var",
    "all_zero",
    "genewise_dispersions",
    "genewise_iters",
    "fitted_dispersions",
    "map_dispersions",
    "dispersions",
    "disp_outlier",
    "map_iters",
    "trend_coeffs",
    "beta",
    "beta_se",
    "beta_cov",
    "beta_converged",
    "beta_iters",
    "log_likelihood",
    "max_cooks",
    "cooks_argmax",
    "replaced",
    "refitted",
    "replace_gene_idx",
    "replace_counts",
)


def _adata(n_samples=40, n_genes=400, n_groups=2, seed=0):
    """Simulated counts with a batch factor, two all-zero genes and strong single-sample outliers (Cook's refits)."""
    ad = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, n_groups=n_groups, random_state=seed)
    counts = np.asarray(ad.X).astype(np.int64)
    counts[:, [5, n_genes - 1]] = 0
    for gene in (7, 20, 51, 222)[: 4 if n_genes > 222 else 2]:
        counts[3, gene] = counts[:, gene].max() * 40 + 100
    ad.layers["counts"] = counts
    ad.obs["batch"] = pd.Categorical(np.where(np.arange(n_samples) % 2 == 0, "b1", "b2"))
    return ad


def _lazy_copy(ad):
    out = ad.copy()
    out.layers["counts"] = da.from_array(ad.layers["counts"].astype(np.int32), chunks=(13, 50))
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Batches of 64 genes, two batches per block: several blocks (and dask tasks) per stage at 40 samples."""
    monkeypatch.setattr(_fit, "_BATCH_ENTRIES", 40 * 64)
    monkeypatch.setattr(lazy, "BLOCK_BYTES", 40 * 2 * 8 * 128)


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _assert_same(mem, lz, keys):
    for key in keys:
        # (a store read lazily names its index "_index"; the labels and every value must match)
        pd.testing.assert_frame_equal(lz.varm[key], mem.varm[key], check_exact=True, check_names=False)
        a, b = mem.uns[key], lz.uns[key]
        assert a.keys() == b.keys()
        for name in a:
            if isinstance(a[name], np.ndarray):
                np.testing.assert_array_equal(b[name], a[name])
            else:
                assert b[name] == a[name], name


CASES = [
    ({"design": "~condition"}, ["deseq2"]),
    ({"design": "~condition + batch", "contrast": ["condition", "B", "A"]}, ["deseq2"]),
    ({"design": "~condition + batch", "test": "lrt", "reduced": "~batch"}, ["deseq2_lrt"]),
    ({"design": "~condition + batch", "shrink": "ashr", "contrast": ["batch", "b2", "b1"]}, ["deseq2"]),
]


@pytest.mark.parametrize(("kwargs", "keys"), CASES)
def test_dask_counts_give_the_in_memory_results_bit_for_bit(small_blocks, kwargs, keys):
    ad = _adata()
    lz = _lazy_copy(ad)
    before = lz.layers["counts"]
    gdx.tl.deseq2(ad, **kwargs)
    gdx.tl.deseq2(lz, **kwargs)
    _assert_same(ad, lz, keys)
    assert lz.layers["counts"] is before  # still the caller's dask array, never loaded into the AnnData
    assert ad.uns[keys[0]]["n_refitted"] > 0  # Cook's outliers replaced and refitted (>= 7 replicates per cell)


def test_three_groups_several_contrasts_and_no_refit_below_seven_replicates(small_blocks):
    ad = _adata(n_samples=18, n_groups=3, seed=2)  # 6 per group: no cell reaches min_replicates=7
    lz = _lazy_copy(ad)
    contrast = [["condition", "B", "A"], ["condition", "C", "B"]]
    gdx.tl.deseq2(ad, contrast=contrast)
    gdx.tl.deseq2(lz, contrast=contrast)
    _assert_same(ad, lz, ["deseq2_B_vs_A", "deseq2_C_vs_B"])
    assert ad.uns["deseq2_B_vs_A"]["n_refitted"] == 0


def test_fit_on_dask_keeps_no_sample_by_gene_matrix(small_blocks):
    ad = _adata()
    x = np.column_stack([np.ones(ad.n_obs), (ad.obs["condition"] == "B").to_numpy(float)])
    mem = deseq2_fit(ad.layers["counts"], x, chunk_size=37)
    lz = deseq2_fit(_lazy_copy(ad).layers["counts"], x, chunk_size=37)
    for name in FIT_FIELDS:
        np.testing.assert_array_equal(getattr(lz, name), getattr(mem, name), err_msg=name)
    assert mem.refitted.sum() > 0
    assert lz.lazy and lz.mu is None and lz.cooks is None and lz.hat_diagonals is None
    with pytest.raises(ValueError, match="keep_matrices=True"):
        deseq2_fit(_lazy_copy(ad).layers["counts"], x, keep_matrices=True)


@pytest.mark.parametrize(("kwargs", "keys"), CASES[1:3])
def test_dask_counts_on_a_two_worker_local_cluster(small_blocks, cluster_client, kwargs, keys):
    ad = _adata()
    lz = _lazy_copy(ad)
    gdx.tl.deseq2(ad, **kwargs)
    gdx.tl.deseq2(lz, **kwargs)
    _assert_same(ad, lz, keys)
    assert len(cluster_client.scheduler_info()["workers"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inference": "pydeseq2"}, "PyDESeq2.*inference='batched'.*compute"),
        ({"shrink": "normal"}, "shrink='normal'.*ashr"),
        ({"shrink": "apeglm"}, "shrink='apeglm'.*ashr"),
    ],
)
def test_what_needs_counts_in_memory_is_refused_with_the_way_out(kwargs, match):
    lz = _lazy_copy(_adata(n_genes=60))
    before = lz.copy()
    with pytest.raises(ValueError, match=match):
        gdx.tl.deseq2(lz, **kwargs)
    assert lz.uns.keys() == before.uns.keys() and lz.varm.keys() == before.varm.keys()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.__setitem__((2, 3), -1), "negative"),
        (lambda c: c.__setitem__(4, 0), "all-zero counts"),
    ],
)
def test_bad_dask_counts_are_refused_before_any_write(edit, match):
    ad = _adata(n_genes=60)
    counts = ad.layers["counts"].copy()
    edit(counts)
    ad.layers["counts"] = da.from_array(counts, chunks=(13, 50))
    with pytest.raises(ValueError, match=match):
        gdx.tl.deseq2(ad)
    assert "deseq2" not in ad.uns and "deseq2" not in ad.varm
    floats = ad.copy()
    floats.layers["counts"] = da.from_array(np.abs(counts) + 0.5, chunks=(13, 50))
    with pytest.raises(ValueError, match="non-integer"):
        gdx.tl.deseq2(floats)


def test_an_anndata_read_lazily_from_zarr(tmp_path):
    ad = _adata(n_genes=150)
    ad.layers["counts"] = ad.layers["counts"].astype(np.int32)
    ad.X = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Writing zarr v2", UserWarning)  # anndata's note on its zarr default
        ad.write_zarr(tmp_path / "ad.zarr")
    lz = ad_lazy.read_lazy(tmp_path / "ad.zarr")
    assert lazy.is_dask(lz.layers["counts"])
    gdx.tl.deseq2(ad, design="~condition + batch")
    gdx.tl.deseq2(lz, design="~condition + batch")
    _assert_same(ad, lz, ["deseq2"])


def test_tl_deseq2_scans_dask_counts_once(monkeypatch):
    ad = _adata()
    lz = _lazy_copy(ad)
    gdx.tl.deseq2(ad, design="~condition")

    def second_scan(*args, **kwargs):
        raise AssertionError("the engine scanned counts that tl.deseq2 had checked")

    monkeypatch.setattr(_fit, "_scan_block", second_scan)
    gdx.tl.deseq2(lz, design="~condition")  # the shell's one pass gives the engine the non-zero genes
    _assert_same(ad, lz, ["deseq2"])
    assert lz.varm["deseq2"]["baseMean"].iloc[[5, -1]].eq(0).all()  # the all-zero genes are known as such
    with pytest.raises(AssertionError, match="scanned"):  # the engine alone still checks dask counts itself
        deseq2_fit(lz.layers["counts"], np.ones((40, 1)))
    with pytest.raises(ValueError, match="`nonzero_genes` must hold 400 booleans"):
        deseq2_fit(lz.layers["counts"], np.ones((40, 1)), nonzero_genes=np.ones(3, dtype=bool))
