from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("agg")

import matplotlib.pyplot as plt

import gendex as gdx

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared_dir() -> Path | None:
    """`$GENDEX_SHARED_DIR`, else `shared/` in the repository root, else beside it (`../shared`)."""
    candidates = [os.environ.get("GENDEX_SHARED_DIR"), REPO_ROOT / "shared", REPO_ROOT.parent / "shared"]
    for cand in candidates:
        if cand and (Path(cand) / "data" / "gse60450").is_dir():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = find_shared_dir()
    if path is None:
        pytest.skip("../shared (GSE60450 data and R reference results) is not present beside this checkout")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_data_dir) -> Path:
    return shared_data_dir / "reference" / "gse60450"


@pytest.fixture(scope="session")
def _gse60450_session(shared_data_dir):
    return gdx.datasets.gse60450(shared_data_dir / "data" / "gse60450")


@pytest.fixture
def gse60450(_gse60450_session):
    """A fresh copy of GSE60450 (12 x 27,179) for each test."""
    return _gse60450_session.copy()


@pytest.fixture
def adata():
    return gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def assert_adata_unchanged(before, after) -> None:
    """Assert that `after` equals the snapshot `before` (taken with `adata.copy()`) in every slot."""
    import numpy as np
    import pandas as pd
    from scipy import sparse

    def dense(m):
        return m.toarray() if sparse.issparse(m) else np.asarray(m)

    assert before.shape == after.shape
    assert list(before.obs_names) == list(after.obs_names)
    assert list(before.var_names) == list(after.var_names)
    np.testing.assert_array_equal(dense(before.X), dense(after.X))
    assert set(before.layers) == set(after.layers)
    for k in before.layers:
        np.testing.assert_array_equal(dense(before.layers[k]), dense(after.layers[k]))
    pd.testing.assert_frame_equal(before.obs, after.obs)
    pd.testing.assert_frame_equal(before.var, after.var)
    assert set(before.uns) == set(after.uns)
    assert set(before.obsm) == set(after.obsm)
    assert set(before.varm) == set(after.varm)


@pytest.fixture
def unchanged():
    """`unchanged(adata)` returns a checker: call it after the failing call to assert nothing was written."""

    def snapshot(adata):
        before = adata.copy()
        return lambda: assert_adata_unchanged(before, adata)

    return snapshot


@pytest.fixture(scope="session")
def dask_cluster():
    """One 2-worker ``distributed.LocalCluster`` (1 thread each) for the out-of-core tests: clusters are slow to
    start."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is an optional dependency")
    # dashboard_address=None still binds the scheduler's HTTP routes to port 8787, so a second cluster anywhere
    # on the machine fails ("Port 8787 is already in use", an error under -W error); ":0" takes a free port
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as cluster:
        yield cluster


@pytest.fixture(params=["threads", "distributed"])
def dask_scheduler(request):
    """Run the test body on dask's threaded scheduler, then on ``dask_cluster`` (as the active client)."""
    dask = pytest.importorskip("dask", reason="dask is an optional dependency (pip install gendex[dask])")
    if request.param == "threads":
        with dask.config.set(scheduler="threads"):
            yield None
        return
    import distributed

    with distributed.Client(request.getfixturevalue("dask_cluster")) as client:
        yield client
