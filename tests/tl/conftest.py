import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gendex._utils import store_de_results
from gendex.stats import bh_adjust


def make_de_adata(adata, *, seed=0, key="de", n_nan=10, extra=None):
    """Store a synthetic DE table in `adata.varm[key]`: genes 0-19 up (stat ~ N(3, 1)), 20-39 down, the rest null.

    The last `n_nan` genes have NaN statistics (untested). Returns the gene sets used by the tests.
    """
    rng = np.random.default_rng(seed)
    n = adata.n_vars
    names = adata.var_names.to_numpy()
    stat = rng.normal(size=n)
    stat[:20] += 3.0
    stat[20:40] -= 3.0
    pvalue = 2 * stats.norm.sf(np.abs(stat))
    df = pd.DataFrame(
        {
            "baseMean": rng.uniform(10, 1000, size=n),
            "log2FoldChange": stat * 0.5,
            "lfcSE": np.full(n, 0.5),
            "stat": stat,
            "pvalue": pvalue,
        },
        index=names,
    )
    df.iloc[n - n_nan :, :] = np.nan
    df["padj"] = bh_adjust(df["pvalue"].to_numpy())
    if extra:
        for col, values in extra.items():
            df[col] = values
    store_de_results(adata, key, df, method="synthetic", params={}, contrast=["condition", "B", "A"])
    sets = {
        "UP": list(names[:20]) + list(names[100:105]),
        "DOWN": list(names[20:40]),
        "TINY": list(names[40:43]),
        "GHOST": [f"absent_{i}" for i in range(10)],
        "WITH_NAN": list(names[n - n_nan :]) + list(names[60:66]),
    }
    for i in range(5):
        sets[f"RANDOM_{i}"] = list(rng.choice(names[40:], size=15, replace=False))
    net = pd.DataFrame([(s, g) for s, genes in sets.items() for g in genes], columns=["source", "target"])
    return net


@pytest.fixture
def de_adata(adata):
    net = make_de_adata(adata)
    return adata, net


@pytest.fixture
def de_factory():
    """`de_factory(adata, key=..., seed=..., extra={col: values})` stores a synthetic DE table and returns the net."""
    return make_de_adata


@pytest.fixture(scope="module")
def one_torch_thread():
    """NB-VAE tests train tiny models: one torch thread avoids oversubscribing a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
