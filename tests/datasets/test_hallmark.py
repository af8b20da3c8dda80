import dataclasses
import gzip

import decoupler as dc
import pytest

import gendex as gdx
from gendex.datasets import _hallmark as mod

# the layout of OmniPath's msigdb-hallmark.tsv.gz (decoupler's source), with a complex member
TABLE = (
    "genesymbol\tcollection\tgeneset\n"
    "A\thallmark\tHALLMARK_HYPOXIA\n"
    "B\thallmark\tHALLMARK_HYPOXIA\n"
    "A\thallmark\tHALLMARK_HYPOXIA\n"
    "COMPLEX:C_D\thallmark\tHALLMARK_APOPTOSIS\n"
)


@pytest.fixture
def omnipath(http_server, monkeypatch):
    """OmniPath replaced by a local server serving TABLE at `/hallmark`."""
    monkeypatch.setattr(mod, "HALLMARK_REMOTE", dataclasses.replace(mod.HALLMARK_REMOTE, url=http_server.url("/h")))
    http_server.files["/h"] = (200, gzip.compress(TABLE.encode()), None)
    return http_server


@pytest.mark.parametrize("organism", ["human", "mouse"])
def test_hallmark_without_network_names_the_offline_alternative(no_network, cache, organism):
    with pytest.raises(ConnectionError, match=r"gdx\.io\.read_gmt") as info:
        gdx.datasets.hallmark(organism)
    assert "could not download the MSigDB hallmark gene sets (OmniPath)" in str(info.value)
    assert "\n" not in str(info.value) and not cache.exists()


def test_hallmark_is_downloaded_once_and_read_offline_from_the_cache(omnipath, cache, monkeypatch):
    net = gdx.datasets.hallmark()
    assert net.to_records(index=False).tolist() == [
        ("HALLMARK_HYPOXIA", "A"),
        ("HALLMARK_HYPOXIA", "B"),
        ("HALLMARK_APOPTOSIS", "C"),
        ("HALLMARK_APOPTOSIS", "D"),
    ]
    assert sorted(p.name for p in cache.iterdir()) == ["msigdb-hallmark.tsv.gz"]
    omnipath.files.clear()  # the server now answers 404: the cache must be used
    assert gdx.datasets.hallmark().equals(net)
    assert omnipath.requests == ["/h"]


def test_hallmark_translates_other_organisms_with_decoupler(omnipath, cache, monkeypatch):
    calls = {}

    def fake_translate(net, columns=None, target_organism="mouse", **kwargs):
        calls.update(columns=columns, target_organism=target_organism)
        out = net.copy()
        out["target"] = out["target"].str.capitalize()
        return out

    monkeypatch.setattr(dc.op, "translate", fake_translate)
    net = gdx.datasets.hallmark("mouse")
    assert calls == {"columns": ["target"], "target_organism": "mouse"}
    assert sorted(net["target"]) == ["A", "B", "C", "D"]


def test_hallmark_translation_offline_names_the_alternative(omnipath, cache, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(dc.op, "translate", offline)
    with pytest.raises(ConnectionError, match=r"decoupler\.op\.translate.*needs the network.*gdx\.io\.read_gmt"):
        gdx.datasets.hallmark("mouse")


def test_hallmark_refuses_a_page_that_is_not_the_table(omnipath, cache):
    omnipath.files["/h"] = (200, b"<html>maintenance</html>", None)
    with pytest.raises(ConnectionError, match=r"not the expected one: it is not the hallmark table"):
        gdx.datasets.hallmark()
    assert not cache.exists()


def test_hallmark_rejects_bad_arguments():
    with pytest.raises(TypeError, match="organism"):
        gdx.datasets.hallmark(organism=None)
    with pytest.raises(ValueError, match="license"):
        gdx.datasets.hallmark(license="free")
