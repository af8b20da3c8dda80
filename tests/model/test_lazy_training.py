"""The NB-VAE trained from counts on disk (backed h5ad, lazy zarr/h5ad) without loading the count matrix.

With full batches the block loader presents the same rows in the same order as the in-memory loader and
makes the same draws from torch's generator, so training is the in-memory training: equal to float32
rounding (nothing is reordered, so in practice bit for bit). With minibatches the order differs (row blocks
shuffled in groups instead of all rows), so the models are two draws of the same stochastic optimisation:
they agree to the seed-to-seed distance of the in-memory training.
"""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest

import gendex as gdx

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")
da = pytest.importorskip("dask.array")

from gendex.model import NBVAE, _data  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:Writing zarr v2 data will no longer be the default:UserWarning"),
]

KW = {"design": "~condition", "n_latent": 1, "max_epochs": 30, "accelerator": "cpu", "layer": None}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Simulated counts (int32 in X) in memory, as .h5ad and as .zarr with row chunks of 8 samples."""
    adata = gdx.datasets.simulate_counts(n_samples=40, n_genes=120, frac_de=0.2, random_state=5)
    gdx.pp.size_factors(adata)
    adata.X = adata.layers.pop("counts").astype(np.int32)
    root = tmp_path_factory.mktemp("lazy")
    adata.write_h5ad(root / "counts.h5ad")
    lazy = adata.copy()
    lazy.X = da.from_array(adata.X, chunks=(8, -1))
    lazy.write_zarr(root / "counts.zarr")
    return adata, root


def _same_training(mem, other):
    np.testing.assert_allclose(other.obsm["X_nbvae"], mem.obsm["X_nbvae"], rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(other.uns["X_nbvae"]["history"], mem.uns["X_nbvae"]["history"], rtol=1e-5)


@pytest.mark.parametrize("kind", ["backed_h5ad", "lazy_zarr", "lazy_h5ad"])
def test_full_batch_from_disk_equals_in_memory(stores, kind):
    adata, root = stores
    mem = adata.copy()
    model_mem = gdx.tl.nbvae(mem, **KW)
    if kind == "backed_h5ad":
        disk = anndata.read_h5ad(root / "counts.h5ad", backed="r")
    else:
        disk = anndata.experimental.read_lazy(root / ("counts.zarr" if kind == "lazy_zarr" else "counts.h5ad"))
    model = gdx.tl.nbvae(disk, **KW)
    assert _data.is_dask(model.adata_manager.get_from_registry("X"))  # the counts stayed on disk
    _same_training(mem, disk)
    np.testing.assert_allclose(model.module.cov_coef.detach().numpy(), model_mem.module.cov_coef.detach().numpy())
    # generative DE reads the samples' annotations from the lazy AnnData and the counts from the model's store
    gdx.tl.generative_de(mem, model_mem, contrast=["condition", "B", "A"], n_draws=50)
    gdx.tl.generative_de(disk, model, contrast=["condition", "B", "A"], n_draws=50)
    pd.testing.assert_frame_equal(disk.varm["nbvae_de"], mem.varm["nbvae_de"], rtol=1e-5, check_names=False)


def test_minibatches_from_disk_read_each_block_once_and_train_as_well(stores, monkeypatch):
    adata, root = stores
    lazy = anndata.experimental.read_lazy(root / "counts.zarr")
    reads = []
    block = _data.BlockDataset._block

    def counting(self, b):
        if b not in self._cache:
            reads.append(b)
        return block(self, b)

    monkeypatch.setattr(_data.BlockDataset, "_block", counting)
    kw = {**KW, "batch_size": 4, "max_epochs": 20, "early_stopping": False}
    model = gdx.tl.nbvae(lazy, **kw)
    n_blocks = 40 // 8
    # 20 epochs x 5 blocks (the sampler visits a shuffle group's blocks together; the cache holds two groups)
    assert len(reads) <= kw["max_epochs"] * n_blocks
    mem, mem_seed = adata.copy(), adata.copy()
    gdx.tl.nbvae(mem, **kw)
    gdx.tl.nbvae(mem_seed, **kw, random_state=1)
    coef = model.module.cov_coef.detach().numpy().ravel()
    for ref in (mem, mem_seed):
        assert ref.uns["X_nbvae"]["params"]["n_epochs"] == kw["max_epochs"]
    h_lazy = lazy.uns["X_nbvae"]["history"]["elbo_train"].iloc[-5:].mean()
    h_mem = mem.uns["X_nbvae"]["history"]["elbo_train"].iloc[-5:].mean()
    h_seed = mem_seed.uns["X_nbvae"]["history"]["elbo_train"].iloc[-5:].mean()
    assert abs(h_lazy - h_mem) <= 3 * abs(h_seed - h_mem) + 1e-3 * abs(h_mem)
    truth = adata.var["true_log2fc"].to_numpy()
    assert np.corrcoef(truth, coef)[0, 1] > 0.9


def test_block_sampler_covers_every_row_once_per_epoch_and_shards_ranks():
    bounds = np.arange(0, 49, 8)
    one = _data.BlockSampler(bounds, batch_size=4)
    assert one.fetch_blocks == 4  # eight minibatches of 4 rows: four blocks of 8
    batches = list(one)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(48)) and len(batches) == len(one) == 12
    groups = [set(np.searchsorted(bounds, b, side="right").tolist()) for b in batches]
    assert len(set().union(*groups[:8])) == 4  # the first eight minibatches come from one group of four blocks
    again = np.concatenate(list(one))
    assert sorted(again.tolist()) == list(range(48)) and not np.array_equal(again, rows)  # a new order
    bounds = np.array([0, 8, 16, 24, 32, 40, 43])
    ranks = [_data.BlockSampler(bounds, batch_size=4, num_replicas=2, rank=r, seed=7) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(3)
    parts = [np.concatenate(list(s)) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == 22 and len(ranks[0]) == len(ranks[1]) == 6
    assert set(parts[0]) | set(parts[1]) == set(range(43))
    assert len(set(parts[0]) & set(parts[1])) == 1  # 43 rows: one padded by wrapping round


def test_bad_counts_on_disk_fail_before_anything_is_written(stores, tmp_path):
    adata, _ = stores
    for bad, message in ((-1, "negative"), (0.5, "non-integer")):
        x = adata.X.astype(np.float32 if bad == 0.5 else np.int32)
        x[3, 7] = bad
        lazy = adata.copy()
        lazy.X = da.from_array(x, chunks=(8, -1))
        before = set(lazy.obsm), set(lazy.uns)
        with pytest.raises(ValueError, match=message):
            gdx.tl.nbvae(lazy, **KW)
        assert (set(lazy.obsm), set(lazy.uns)) == before
    empty = adata.X.copy()
    empty[5] = 0
    lazy = adata.copy()
    lazy.X = da.from_array(empty, chunks=(8, -1))
    with pytest.raises(ValueError, match="all-zero"):
        gdx.tl.nbvae(lazy, **KW)


def test_residual_de_refuses_to_load_counts_on_disk_with_the_way_out(stores, monkeypatch):
    adata, root = stores
    lazy = anndata.experimental.read_lazy(root / "counts.zarr")
    model = gdx.tl.nbvae(lazy, layer=None, n_latent=1, max_epochs=5, accelerator="cpu")
    labels = np.random.default_rng(0).permutation(np.repeat(["u", "v"], 20))  # nothing in the data separates them
    shell = anndata.AnnData(
        obs=lazy.obs.to_memory().assign(random_group=pd.Categorical(labels)),
        var=pd.DataFrame(index=lazy.var_names.copy()),
    )
    monkeypatch.setattr(_data, "IN_MEMORY_LIMIT", 0)
    with pytest.raises(ValueError, match="design='~factor'"):
        gdx.tl.generative_de(shell, model, contrast=["random_group", "v", "u"], n_draws=20)
    assert "nbvae_de" not in shell.varm


def test_setup_anndata_refuses_a_backed_dataset_with_the_way_out(stores):
    _, root = stores
    backed = anndata.read_h5ad(root / "counts.h5ad", backed="r")
    with pytest.raises(TypeError, match="read_lazy"):
        NBVAE.setup_anndata(backed, layer=None)
