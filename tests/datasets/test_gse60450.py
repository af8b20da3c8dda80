import gzip

import numpy as np
import pytest

import gendex as gdx


def test_gse60450_shape_and_true_annotation(gse60450):
    assert gse60450.shape == (12, 27179)
    assert gse60450.var_names.dtype == object and gse60450.var_names[0] == "497097"
    obs = gse60450.obs
    assert list(obs["celltype"].cat.categories) == ["basal", "luminal"]
    assert list(obs["status"].cat.categories) == ["virgin", "pregnant", "lactate"]
    # the trap: MCL1-D* are basal, MCL1-L* luminal, each across all three stages
    assert (obs.loc[obs["name"].str.startswith("MCL1-D"), "celltype"] == "basal").all()
    assert (obs.loc[obs["name"].str.startswith("MCL1-L"), "celltype"] == "luminal").all()
    assert obs.groupby("celltype", observed=True)["status"].nunique().eq(3).all()
    assert (obs["group"].value_counts() == 2).all()
    np.testing.assert_array_equal(gse60450.X, gse60450.layers["counts"])


def test_gse60450_reads_geo_layout_and_env_var(tmp_path, shared_data_dir, monkeypatch):
    src = shared_data_dir / "data" / "gse60450" / "counts_matrix.tsv"
    lines = src.read_text().splitlines()
    header = lines[0].split("\t")
    out = [["EntrezGeneID", "Length", *header[1:]]]
    out += [[row.split("\t")[0], "1000", *row.split("\t")[1:]] for row in lines[1:50]]
    geo = tmp_path / "GSE60450_Lactation-GenewiseCounts.txt.gz"
    with gzip.open(geo, "wt") as fh:
        fh.write("\n".join("\t".join(r) for r in out) + "\n")
    monkeypatch.setenv("GENDEX_DATA_DIR", str(tmp_path))
    a = gdx.datasets.gse60450()
    assert a.shape == (12, 49)
    assert (a.var["length"] == 1000).all()
    assert a.obs["celltype"].iloc[0] == "basal"


def test_gse60450_missing_local_copy(tmp_path):
    with pytest.raises(FileNotFoundError, match="counts_matrix.tsv"):
        gdx.datasets.gse60450(tmp_path)


def test_gse60450_download_goes_to_cache(tmp_path, monkeypatch, shared_data_dir):
    """No network in tests: the downloader is replaced, and the cache is used on the second call."""
    import shutil

    from gendex.datasets import _gse60450 as mod

    calls = []

    def fake_download(url, dest):
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data_dir / "data" / "gse60450" / "counts_matrix.tsv", dest.with_suffix(".tmp"))
        with open(dest.with_suffix(".tmp"), "rb") as fi, gzip.open(dest, "wb") as fo:
            fo.write(fi.read())

    monkeypatch.delenv("GENDEX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(mod, "_download", fake_download)
    a = gdx.datasets.gse60450()
    b = gdx.datasets.gse60450()
    assert len(calls) == 1 and "GSE60450" in calls[0]
    assert a.shape == b.shape == (12, 27179)
