import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import gendex as gdx


def test_size_factors_match_r_deseq2(gse60450, reference_dir):
    gdx.pp.filter_genes(gse60450, min_total_count=10)
    gdx.pp.size_factors(gse60450)
    ref = pd.read_csv(reference_dir / "deseq2_design_size_factors.csv", index_col=0)["size_factor"]
    np.testing.assert_allclose(gse60450.obs["size_factors"], ref.loc[gse60450.obs_names], rtol=0, atol=1e-8)
    assert gse60450.uns["size_factors"]["method"] == "ratio"


def test_size_factors_recover_truth(adata):
    big = gdx.datasets.simulate_counts(n_samples=8, n_genes=3000, random_state=3)
    gdx.pp.size_factors(big)
    est = big.obs["size_factors"].to_numpy()
    true = big.obs["true_size_factor"].to_numpy()
    # equal up to a global scale
    ratio = est / true
    assert np.std(np.log(ratio)) < 0.05


def test_poscounts_geometric_mean_one_and_handles_zeros(adata):
    adata.layers["counts"][0, :] = 0
    adata.layers["counts"][0, 0] = 5
    adata.layers["counts"][1, 0] = 0
    with pytest.raises(ValueError, match="poscounts"):
        gdx.pp.size_factors(adata, method="ratio")
    gdx.pp.size_factors(adata, method="poscounts")
    sf = adata.obs["size_factors"].to_numpy()
    assert np.isclose(np.exp(np.log(sf).mean()), 1.0)


def test_size_factors_inplace_false_and_copy(adata):
    res = gdx.pp.size_factors(adata, inplace=False)
    assert isinstance(res, pd.Series)
    assert "size_factors" not in adata.obs
    out = gdx.pp.size_factors(adata, copy=True)
    assert "size_factors" in out.obs and "size_factors" not in adata.obs
    with pytest.raises(ValueError, match="copy"):
        gdx.pp.size_factors(adata, copy=True, inplace=False)


def test_size_factors_sparse_equals_dense(adata):
    dense = gdx.pp.size_factors(adata, inplace=False)
    adata.layers["counts"] = sparse.csr_matrix(adata.layers["counts"])
    np.testing.assert_allclose(gdx.pp.size_factors(adata, inplace=False), dense)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.layers["counts"].__setitem__((0, 0), -1), "negative"),
        (lambda a: a.layers.__setitem__("counts", a.layers["counts"] + 0.5), "non-integer"),
        (lambda a: a.layers.__setitem__("counts", np.where(np.eye(8, 200) > 0, np.nan, a.layers["counts"])), "NaN"),
        (
            lambda a: a.layers.__setitem__("counts", np.where(np.eye(8, 200) > 0, np.inf, a.layers["counts"])),
            "infinite",
        ),
        (lambda a: a.layers["counts"].__setitem__(1, 0), "all-zero"),
    ],
)
def test_bad_counts_raise_and_leave_adata_unchanged(adata, unchanged, mutate, match):
    mutate(adata)
    check = unchanged(adata)
    with pytest.raises(ValueError, match=match):
        gdx.pp.size_factors(adata)
    check()


def test_missing_layer_raises(adata, unchanged):
    check = unchanged(adata)
    with pytest.raises(KeyError, match="raw"):
        gdx.pp.size_factors(adata, layer="raw")
    check()
