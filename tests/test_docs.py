"""The docs configuration: offline intersphinx and the Returns-prose hook (the full build is `make docs`)."""

import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_conf(monkeypatch, offline):
    monkeypatch.setenv("GENDEX_DOCS_OFFLINE", "1" if offline else "0")
    spec = importlib.util.spec_from_file_location("gendex_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def ignored(conf, role, target):
    return (role, target) in conf.nitpick_ignore or any(
        re.fullmatch(r, role) and re.fullmatch(t, target) for r, t in conf.nitpick_ignore_regex
    )


def test_offline_build_skips_intersphinx_but_checks_gendex_names(monkeypatch):
    conf = load_conf(monkeypatch, offline=True)
    assert conf.intersphinx_mapping == {}
    assert ignored(conf, "py:class", "numpy.ndarray") and ignored(conf, "py:class", "anndata.AnnData")
    assert ignored(conf, "py:data", "typing.Any") and ignored(conf, "py:class", "pandas.core.frame.DataFrame")
    assert not ignored(conf, "py:class", "gendex.model.NBVAE") and not ignored(conf, "py:func", "gendex.tl.deseq2")


def test_online_build_links_other_projects(monkeypatch):
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: open(__file__))  # a context manager
    conf = load_conf(monkeypatch, offline=False)
    assert {"python", "numpy", "pandas", "anndata", "scvi-tools"} <= set(conf.intersphinx_mapping)
    assert not ignored(conf, "py:class", "numpy.ndarray"), "online, external references are checked"
    assert ignored(conf, "py:class", "numpy._typing._array_like._ScalarT"), "private modules never are"


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        (["The AUROC in [0, 1]."], [":", "    The AUROC in [0, 1]."]),
        (
            ["Sets ``adata.uns[key]`` and", "returns None."],
            [":", "    Sets ``adata.uns[key]`` and", "    returns None."],
        ),
        (["pandas.DataFrame", "    One row per key."], ["pandas.DataFrame", "    One row per key."]),
        (["AnnData | None", "    The copy."], ["AnnData | None", "    The copy."]),
    ],
)
def test_prose_returns_become_descriptions(monkeypatch, returns, expected):
    conf = load_conf(monkeypatch, offline=True)
    lines = ["Summary.", "", "Returns", "-------", *returns, "", "Examples", "--------", ">>> 1"]
    conf._prose_returns(None, "function", "f", None, {}, lines)
    assert lines[:4] == ["Summary.", "", "Returns", "-------"]
    assert lines[4 : 4 + len(expected)] == expected and lines[-3:] == ["Examples", "--------", ">>> 1"]
