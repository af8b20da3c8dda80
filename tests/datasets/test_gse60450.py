import dataclasses
import gzip

import numpy as np
import pytest

import gendex as gdx
from gendex.datasets._gse60450 import GEO_FILE


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


def _geo_file(shared_data_dir, n_genes=None):
    """GEO's layout (EntrezGeneID, Length, samples), gzip-compressed, from the shared counts."""
    src = shared_data_dir / "data" / "gse60450" / "counts_matrix.tsv"
    lines = src.read_text().splitlines()
    header = lines[0].split("\t")
    out = ["\t".join(["EntrezGeneID", "Length", *header[1:]])]
    for row in lines[1 : None if n_genes is None else n_genes + 1]:
        gene, *counts = row.split("\t")
        out.append("\t".join([gene, "1000", *counts]))
    return gzip.compress(("\n".join(out) + "\n").encode())


@pytest.fixture
def geo_server(http_server, monkeypatch):
    """GEO replaced by a local server: `GEO_REMOTE` points at `/geo`."""
    from gendex.datasets import _gse60450 as mod

    monkeypatch.setattr(mod, "GEO_REMOTE", dataclasses.replace(mod.GEO_REMOTE, url=http_server.url("/geo")))
    return http_server


def test_gse60450_download_is_checked_and_cached(geo_server, cache, shared_data_dir):
    geo_server.files["/geo"] = (200, _geo_file(shared_data_dir), None)
    a = gdx.datasets.gse60450()
    b = gdx.datasets.gse60450()
    assert geo_server.requests == ["/geo"]  # the second call read the cache
    assert a.shape == b.shape == (12, 27179) and a.uns["dataset"]["source"] == str(cache / GEO_FILE)
    assert sorted(p.name for p in cache.iterdir()) == [GEO_FILE]
    # a cached file cut short is detected and downloaded again
    data = (cache / GEO_FILE).read_bytes()
    (cache / GEO_FILE).write_bytes(data[: len(data) // 3])
    assert gdx.datasets.gse60450().shape == (12, 27179)
    assert geo_server.requests == ["/geo", "/geo"]


@pytest.mark.parametrize(
    ("served", "match"),
    [
        ("other counts", r"not the expected one: it holds 12 samples x 49 genes, 12 x 27179 expected"),
        ("truncated", r"stopped after [\d,]+ of [\d,]+ bytes"),
        ("error", r"HTTPError: HTTP Error 503"),
    ],
)
def test_gse60450_failed_download_names_the_local_alternatives(geo_server, cache, shared_data_dir, served, match):
    body = _geo_file(shared_data_dir, n_genes=49 if served == "other counts" else None)
    geo_server.files["/geo"] = {
        "other counts": (200, body, None),
        "truncated": (200, body[: len(body) // 2], len(body)),
        "error": (503, b"busy", None),
    }[served]
    with pytest.raises(ConnectionError, match=match) as info:
        gdx.datasets.gse60450()
    assert "gse60450(path=...)" in str(info.value) and "GENDEX_DATA_DIR" in str(info.value)
    assert not cache.exists()


def test_gse60450_offline_is_one_clear_line(no_network, cache):
    with pytest.raises(ConnectionError) as info:
        gdx.datasets.gse60450()
    message = str(info.value)
    assert message.startswith("could not download the GSE60450 counts (GEO) from https://www.ncbi.nlm.nih.gov/")
    assert "`gdx.datasets.gse60450(path=...)`" in message and "GENDEX_DATA_DIR" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not cache.exists()


def test_content_digest_is_the_pinned_one(gse60450):
    from gendex.datasets._gse60450 import CONTENT_SHA256, content_digest

    assert content_digest(gse60450) == CONTENT_SHA256
    changed = gse60450.copy()
    changed.layers["counts"][0, 0] += 1
    assert content_digest(changed) != CONTENT_SHA256
