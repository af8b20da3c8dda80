"""Everything a full gendex workflow writes survives `write_h5ad`/`read_h5ad` and `write_zarr`/`read_zarr`
(issue 14 item 2): every `uns`/`varm`/`obsm`/`obsp`/`layers` entry and `obs`/`var` compared deeply, with the same
values and dtypes. The one documented change is anndata's: a list in `uns` is read back as a 1-D numpy array
holding the same elements (docs/reliability.md); `gdx.get` readers give the same answers on a read-back file."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import gendex as gdx

pytest.importorskip("scvi")

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Writing zarr v2 data will no longer be the default:UserWarning"),
]
SLOTS = ("uns", "varm", "obsm", "obsp", "layers")


@pytest.fixture(scope="module")
def workflow():
    """One AnnData through qc, filtering, size factors, log-CPM, MDS/PCA, DESeq2 (two contrasts), limma-voom,
    t-test, compare_de, enrich, a 3-epoch NB-VAE with generative DE and a latent path, and evaluate_de."""
    import socket

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in ("getaddrinfo", "create_connection"):
                mp.setattr(socket, name, no_network)
            mp.setattr(socket.socket, "connect", no_network)
            adata = gdx.datasets.simulate_counts(n_samples=12, n_genes=300, n_groups=3)
            adata.obs["batch"] = pd.Categorical(["b1", "b2"] * 6)
            gdx.pp.qc_metrics(adata)
            gdx.pp.filter_genes(adata)
            gdx.pp.size_factors(adata)
            gdx.pp.log_cpm(adata)
            gdx.tl.mds(adata)
            gdx.tl.pca(adata)
            gdx.tl.deseq2(
                adata, design="~batch + condition", contrast=[["condition", "B", "A"], ["condition", "C", "A"]]
            )
            gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
            gdx.tl.ttest(adata, groupby="condition", group1="B", group2="A", layer="log_cpm")
            gdx.tl.compare_de(adata, "deseq2_B_vs_A", "limma_voom")
            rng = np.random.default_rng(0)
            genes = adata.var_names.to_numpy()
            net = pd.DataFrame(
                [(f"SET_{i}", g) for i in range(8) for g in rng.choice(genes, 20, replace=False)],
                columns=["source", "target"],
            )
            gdx.tl.enrich(adata, key="deseq2_B_vs_A", net=net)
            model = gdx.tl.nbvae(adata, max_epochs=3, **TRAIN)
            gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A", n_draws=50)
            gdx.tl.latent_path(adata, model, start=("condition", "A"), end=("condition", "B"), n_points=5)
            gdx.tl.evaluate_de(adata, key="deseq2_B_vs_A")
    finally:
        torch.set_num_threads(threads)
    assert attempts == []  # the whole workflow runs without the network (docs/reliability.md)
    return adata


@pytest.fixture(scope="module", params=["h5ad", "zarr"])
def read_back(request, workflow, tmp_path_factory):
    path = tmp_path_factory.mktemp("roundtrip") / f"workflow.{request.param}"
    if request.param == "h5ad":
        workflow.write_h5ad(path)
        return ad.read_h5ad(path)
    workflow.write_zarr(path)
    return ad.read_zarr(path)


def _same(before, after, where: str, seen: list[str]) -> None:
    """Assert `after` (read back) equals `before` (in memory) deeply; append every leaf compared to `seen`."""
    if isinstance(before, dict):
        assert isinstance(after, dict), f"{where}: dict read back as {type(after).__name__}"
        assert sorted(before) == sorted(after), f"{where}: keys {sorted(before)} != {sorted(after)}"
        for k in before:
            _same(before[k], after[k], f"{where}/{k}", seen)
        return
    seen.append(where)
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, check_exact=True, obj=where)
    elif isinstance(before, list | tuple):
        # anndata stores lists as arrays and reads them back as 1-D numpy arrays (documented)
        assert isinstance(after, np.ndarray) and after.ndim == 1, f"{where}: list read back as {type(after)}"
        back = after.tolist()
        assert back == list(before), f"{where}: {back} != {before}"
        assert [type(v) for v in back] == [type(v) for v in before] or not before, f"{where}: element types differ"
    elif isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray), f"{where}: array read back as {type(after).__name__}"
        assert after.shape == before.shape, f"{where}: shape {after.shape} != {before.shape}"
        if before.dtype.kind in "OUT":  # strings: object in memory and in h5ad, numpy's StringDType from zarr
            assert after.dtype.kind in "OUT" and after.tolist() == before.tolist(), where
        else:
            assert after.dtype == before.dtype, f"{where}: dtype {after.dtype} != {before.dtype}"
            np.testing.assert_array_equal(after, before, err_msg=where)
    elif sparse.issparse(before):
        assert sparse.issparse(after) and after.format == before.format and after.dtype == before.dtype, where
        np.testing.assert_array_equal(after.toarray(), before.toarray(), err_msg=where)
    elif isinstance(before, float) and math.isnan(before):
        assert isinstance(after, float) and math.isnan(after), where
    else:
        assert type(after) is type(before), f"{where}: {type(before).__name__} read back as {type(after).__name__}"
        assert after == before, f"{where}: {after!r} != {before!r}"


def test_every_entry_survives_the_round_trip(workflow, read_back):
    seen: list[str] = []
    for slot in SLOTS:
        _same(dict(getattr(workflow, slot)), dict(getattr(read_back, slot)), slot, seen)
    for slot in ("obs", "var"):
        _same(getattr(workflow, slot), getattr(read_back, slot), slot, seen)
    _same(workflow.X, read_back.X, "X", seen)
    # coverage: every slot the workflow fills, and more than a hundred leaves in uns and varm
    n_uns = sum(s.startswith("uns/") for s in seen)
    n_varm = sum(s.startswith("varm/") for s in seen)
    assert n_uns > 100 and n_varm == len(workflow.varm) >= 6, (n_uns, n_varm)
    assert {s.split("/")[0] for s in seen} == {*SLOTS, "obs", "var", "X"}


def test_get_readers_work_on_read_back_files(workflow, read_back):
    # the order of keys may change: HDF5 and zarr list a group's members alphabetically
    assert sorted(gdx.get.de_keys(read_back)) == sorted(gdx.get.de_keys(workflow))
    assert len(gdx.get.de_keys(workflow)) >= 5
    for key in gdx.get.de_keys(workflow):
        pd.testing.assert_frame_equal(gdx.get.de_results(read_back, key), gdx.get.de_results(workflow, key))
    assert sorted(gdx.get.enrich_keys(read_back)) == sorted(gdx.get.enrich_keys(workflow)) != []
    for key in gdx.get.enrich_keys(workflow):
        pd.testing.assert_frame_equal(gdx.get.enrich_results(read_back, key), gdx.get.enrich_results(workflow, key))


def test_readers_of_stored_results_work_on_read_back_files(workflow, read_back):
    """`tl` functions that read a stored result give the same answer from a read-back file."""
    for adata in (workflow, read_back):
        gdx.tl.compare_de(adata, "deseq2_C_vs_A", "ttest", key_added="cmp_again")
    _same(workflow.uns["cmp_again"], read_back.uns["cmp_again"], "uns/cmp_again", [])
    for adata in (workflow, read_back):
        del adata.uns["cmp_again"]


def test_h5ad_safe_values_read_back_the_same(tmp_path):
    """Every kind of value `h5ad_safe` returns reads back equal (lists as 1-D arrays of the same elements)."""
    from pathlib import Path

    from gendex._utils import h5ad_safe

    zoo = {
        "none": None,
        "tuple": ("condition", "B", "A"),
        "nested": [["a", "b"], ["c"]],
        "mixed": [1, "a", None],
        "int_and_float": [1, 2.5],
        "bools": [True, False],
        "empty": [],
        "np_scalar": np.float32(0.25),
        "np_int": np.int64(3),
        "str_array": np.array(["x", "y"]),
        "float32_array": np.arange(3, dtype=np.float32),
        "series": pd.Series([1.0, 2.0]),
        "path": Path("/data/counts.tsv"),
        "int_keys": {1: "one", 2: {"deep": (1, 2)}},
        "frame": pd.DataFrame({"a": [1.5, np.nan], "b": ["x", "y"]}, index=["r1", "r2"]),
        "nan": float("nan"),
    }
    adata = ad.AnnData(np.zeros((2, 2), dtype=np.float32))
    adata.uns["zoo"] = h5ad_safe(zoo)
    for fmt in ("h5ad", "zarr"):
        path = tmp_path / f"zoo.{fmt}"
        getattr(adata, f"write_{fmt}")(path)
        back = getattr(ad, f"read_{fmt}")(path)
        seen: list[str] = []
        _same(adata.uns["zoo"], back.uns["zoo"], "uns/zoo", seen)
        assert len(seen) == 18
    assert adata.uns["zoo"]["mixed"] == ["1", "a", "None"] and adata.uns["zoo"]["int_and_float"] == [1.0, 2.5]
