"""What keeps the NB-VAE's memory bounded with counts on disk: row blocks read once, work done in groups.

Memory itself is measured in ``benchmarks/nbvae_scale.py`` (never in a test). Tested here is what bounds it:
the start, the orthogonalisation refresh and the inference loaders read the counts in whole row blocks, each
block once, keeping only the rows they need; the training cache holds one shuffle group and still reads each
block once per epoch; and the steps computed group by group give the results of computing them at once.
"""

from __future__ import annotations

import numpy as np
import pytest

import gendex as gdx

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")
da = pytest.importorskip("dask.array")

from gendex.model import _data, _init, _posterior  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def block_reads(monkeypatch):
    """The ``(start, stop)`` of every row block read from counts on disk."""
    reads: list[tuple[int, int]] = []
    read = _data.read_block

    def counting(x, start, stop):
        if _data.is_dask(x):
            reads.append((int(start), int(stop)))
        return read(x, start, stop)

    monkeypatch.setattr(_data, "read_block", counting)
    return reads


def _lazy(adata, rows_per_chunk):
    lazy = adata.copy()
    lazy.layers["counts"] = da.from_array(adata.layers["counts"].astype(np.int32), chunks=(rows_per_chunk, 40))
    return lazy


def test_iter_rows_reads_each_block_once_and_gives_the_indexed_rows(block_reads):
    rng = np.random.default_rng(0)
    x = rng.poisson(5.0, size=(50, 7)).astype(np.int32)
    lazy = da.from_array(x, chunks=(8, 3))
    rows = np.sort(rng.choice(50, 23, replace=False))
    touched = sorted(set((rows // 8).tolist()))
    for size in (1, 4, 23, 100):
        block_reads.clear()
        on_disk = list(_data.iter_rows(lazy, rows, size))
        in_memory = list(_data.iter_rows(x, rows, size))
        assert [w for w, _ in on_disk] == [w for w, _ in in_memory]  # the same groups either way
        assert sum(w.stop - w.start for w, _ in on_disk) == len(rows)
        for (where, part), (_, ref) in zip(on_disk, in_memory, strict=True):
            assert part.dtype == np.int32 and len(part) <= size
            np.testing.assert_array_equal(part, x[rows[where]])
            np.testing.assert_array_equal(ref, x[rows[where]])
        assert block_reads == [(8 * b, min(8 * b + 8, 50)) for b in touched]  # each touched block once, in order
    np.testing.assert_array_equal(_data.read_rows(lazy, rows), x[rows].astype(np.float64))


def test_the_start_in_place_gives_the_same_values():
    adata = gdx.datasets.simulate_counts(n_samples=30, n_genes=80, random_state=2)
    gdx.pp.size_factors(adata)
    counts = adata.layers["counts"].astype(np.float64)
    sf = adata.obs["size_factors"].to_numpy()
    feats = (adata.obs["condition"] == "B").to_numpy(dtype=np.float64)[:, None]
    ref = _init.initial_parameters(counts.copy(), sf, feats, 2, 1.0)
    scratch = counts.copy()
    got = _init.initial_parameters(scratch, sf, feats, 2, 1.0, overwrite=True)
    assert not np.array_equal(scratch, counts)  # the counts' memory was used
    assert ref.keys() == got.keys()
    for key, value in ref.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_orthogonalisation_refresh_in_groups_equals_one_pass(monkeypatch):
    adata = gdx.datasets.simulate_counts(n_samples=40, n_genes=120, random_state=4)
    gdx.pp.size_factors(adata)
    model = gdx.tl.nbvae(adata, design="~condition", n_latent=2, max_epochs=5, accelerator="cpu")
    enc = model.module.z_encoder
    enc.cov_effect.zero_()  # the raw codes then carry the design's effects: a coefficient to get right
    x = torch.as_tensor(adata.layers["counts"], dtype=torch.float32)
    sf = torch.as_tensor(adata.obs["size_factors"].to_numpy(dtype=np.float32))[:, None]
    feats = _posterior.covariate_features(model)
    enc.refresh_orthogonalisation(torch.log1p(x / sf), feats)  # all samples at once
    ref = enc.code_cov_coef.clone()
    assert float(ref.abs().max()) > 0.1
    enc.code_cov_coef.zero_()
    monkeypatch.setattr(_data, "group_rows", lambda n_genes, n_arrays=8: 7)  # 40 samples in 6 groups
    model._refresh_orthogonalisation()
    torch.testing.assert_close(enc.code_cov_coef, ref, rtol=1e-5, atol=1e-6)


def test_training_cache_of_one_group_reads_each_block_once_per_epoch(block_reads):
    # blocks of 4 rows (the last of 2), minibatches of 3: shuffle groups of 7 blocks (26 or 28 rows), so a
    # minibatch straddles two groups
    adata = gdx.datasets.simulate_counts(n_samples=42, n_genes=60, random_state=6)
    gdx.pp.size_factors(adata)
    lazy = _lazy(adata, 4)
    model = gdx.tl.nbvae(lazy, n_latent=1, max_epochs=2, batch_size=3, early_stopping=False, accelerator="cpu")
    splitter = _data.BlockDataSplitter(model.adata_manager, train_size=1.0, batch_size=3)
    splitter.setup()
    loader = splitter.train_dataloader()
    dataset, sampler = loader.dataset, loader.sampler
    assert dataset.cache_blocks == sampler.fetch_blocks == 7
    for _ in range(20):
        dataset._cache.clear()
        block_reads.clear()
        rows = np.concatenate([dataset[batch]["X"] for batch in sampler])
        assert len(rows) == 42
        assert sorted(s for s, _ in block_reads) == list(range(0, 42, 4))  # each block once


def test_inference_on_disk_reads_each_block_once_and_equals_in_memory(block_reads):
    adata = gdx.datasets.simulate_counts(n_samples=36, n_genes=60, random_state=8)
    gdx.pp.size_factors(adata)
    lazy = _lazy(adata, 6)
    kw = {"design": "~condition", "n_latent": 1, "max_epochs": 10, "accelerator": "cpu"}
    model_mem = gdx.tl.nbvae(adata, **kw)
    model = gdx.tl.nbvae(lazy, **kw)
    rows = np.array([0, 1, 2, 13, 14, 20, 35])
    block_reads.clear()
    z = model.get_latent_representation(indices=rows, batch_size=2)
    assert [s for s, _ in block_reads] == [0, 12, 18, 30]  # the blocks of these rows, once each
    np.testing.assert_allclose(z, model_mem.get_latent_representation(indices=rows), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_decoded_means(), model_mem.get_decoded_means(), rtol=1e-4)
