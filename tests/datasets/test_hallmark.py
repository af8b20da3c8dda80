import socket

import decoupler as dc
import pandas as pd
import pytest

import gendex as gdx


@pytest.fixture
def no_network(monkeypatch):
    """Simulate a machine without network: name resolution and connections fail, as they do offline."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (network disabled in tests)")

    def refuse_connect(self, *args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)


@pytest.mark.parametrize("organism", ["human", "mouse"])
def test_hallmark_without_network_names_the_offline_alternative(no_network, organism):
    with pytest.raises(ConnectionError, match=r"gdx\.io\.read_gmt") as info:
        gdx.datasets.hallmark(organism)
    assert "decoupler.op.hallmark" in str(info.value) and "needs the network" in str(info.value)


def test_hallmark_restores_msigdb_names(monkeypatch):
    fake = pd.DataFrame({"source": ["HYPOXIA", "HYPOXIA", "HYPOXIA", "APOPTOSIS"], "target": ["A", "B", "A", "C"]})
    calls = {}

    def fake_hallmark(organism="human", license="academic", verbose=False):
        calls.update(organism=organism, license=license)
        return fake.copy()

    monkeypatch.setattr(dc.op, "hallmark", fake_hallmark)
    net = gdx.datasets.hallmark("mouse", license="commercial")
    assert calls == {"organism": "mouse", "license": "commercial"}
    assert net.to_records(index=False).tolist() == [
        ("HALLMARK_HYPOXIA", "A"),
        ("HALLMARK_HYPOXIA", "B"),
        ("HALLMARK_APOPTOSIS", "C"),
    ]


def test_hallmark_rejects_bad_organism():
    with pytest.raises(TypeError, match="organism"):
        gdx.datasets.hallmark(organism=None)
