import numpy as np
import pytest

import gendex as gdx


def test_qc_metrics_counts_and_record(adata):
    counts = np.asarray(adata.layers["counts"])
    counts[2, :5] = 0  # sample 2 loses five detected genes
    gdx.pp.qc_metrics(adata)
    np.testing.assert_array_equal(adata.obs["library_size"], counts.sum(axis=1))
    np.testing.assert_array_equal(adata.obs["n_genes_detected"], (counts > 0).sum(axis=1))
    np.testing.assert_array_equal(adata.var["total_counts"], counts.sum(axis=0))
    np.testing.assert_array_equal(adata.var["n_samples_detected"], (counts > 0).sum(axis=0))
    rec = adata.uns["qc_metrics"]
    assert rec["layer"] == "counts"
    assert list(rec["obs_columns"]) == ["library_size", "n_genes_detected"]
    assert list(rec["var_columns"]) == ["total_counts", "n_samples_detected"]


def test_qc_metrics_key_added_and_copy(adata, unchanged):
    adata.X = adata.layers["counts"].copy()
    check = unchanged(adata)
    out = gdx.pp.qc_metrics(adata, layer=None, key_added="qc_raw", copy=True)
    check()
    assert "qc_raw" in out.uns and "qc_metrics" not in out.uns
    assert out.uns["qc_raw"]["layer"] == "X"
    assert out.obs["library_size"].sum() == np.asarray(adata.X).sum()


@pytest.mark.parametrize("key", ["", None, 3])
def test_qc_metrics_bad_key_added_writes_nothing(adata, unchanged, key):
    check = unchanged(adata)
    with pytest.raises(ValueError, match="`key_added` must be a non-empty string"):
        gdx.pp.qc_metrics(adata, key_added=key)
    check()
