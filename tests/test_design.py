import numpy as np
import pandas as pd
import pytest

from gendex._design import contrast_vector, design_matrix


@pytest.fixture
def obs():
    return pd.DataFrame(
        {
            "celltype": pd.Categorical(["basal", "luminal"] * 6, categories=["basal", "luminal"]),
            "status": pd.Categorical(
                ["virgin"] * 4 + ["pregnant"] * 4 + ["lactate"] * 4, categories=["virgin", "pregnant", "lactate"]
            ),
            "one": ["x"] * 12,
        },
        index=[f"s{i}" for i in range(12)],
    )


def test_design_matrix_columns_and_contrasts(obs):
    x = design_matrix(obs, "~celltype + status")
    assert list(x.columns) == ["Intercept", "celltype[T.luminal]", "status[T.pregnant]", "status[T.lactate]"]
    np.testing.assert_array_equal(contrast_vector(x, obs, ["status", "lactate", "virgin"]), [0, 0, 0, 1])
    np.testing.assert_array_equal(contrast_vector(x, obs, ["status", "lactate", "pregnant"]), [0, 0, -1, 1])
    np.testing.assert_array_equal(contrast_vector(x, obs, ["celltype", "basal", "luminal"]), [0, -1, 0, 0])


def test_design_errors(obs):
    with pytest.raises(KeyError, match="nope"):
        design_matrix(obs, "~nope")
    with pytest.raises(ValueError, match="single level"):
        design_matrix(obs, "~one")
    obs["dup"] = obs["celltype"].astype(str)
    with pytest.raises(ValueError, match="rank deficient"):
        design_matrix(obs, "~celltype + dup")
    x = design_matrix(obs, "~celltype")
    with pytest.raises(ValueError, match="does not exist"):
        contrast_vector(x, obs, ["celltype", "stromal", "basal"])
    with pytest.raises(ValueError, match="matches no coefficient"):
        contrast_vector(x, obs, ["status", "lactate", "virgin"])


def test_public_design_matrix_leaves_adata_unchanged():
    import gendex as gdx

    ad = gdx.datasets.simulate_counts(n_samples=8, n_genes=20, random_state=0)
    before = ad.obs.copy()
    x = gdx.get.design_matrix(ad, "~0 + condition")
    assert list(x.columns) == ["condition[A]", "condition[B]"]
    assert list(x.index) == list(ad.obs_names)
    np.testing.assert_array_equal(x.sum(1), 1.0)
    pd.testing.assert_frame_equal(ad.obs, before)
    with pytest.raises(KeyError, match="unknown `obs` column"):
        gdx.get.design_matrix(ad, "~batch")
    with pytest.raises(TypeError, match="AnnData"):
        gdx.get.design_matrix(ad.obs, "~condition")
