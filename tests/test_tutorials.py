import json
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def load(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and "id" in cell and isinstance(cell["source"], list)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "commit notebooks without outputs"
    return nb


def code_of(nb):
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_there_are_tutorials():
    assert [p.name for p in NOTEBOOKS] == ["gse60450_walkthrough.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_committed_without_outputs(path):
    nb = load(path)
    compile(code_of(nb), str(path), "exec")


def test_gse60450_walkthrough_runs(shared_data_dir, monkeypatch):
    nb = load(TUTORIALS / "gse60450_walkthrough.ipynb")
    monkeypatch.chdir(TUTORIALS)
    monkeypatch.setenv("GENDEX_DATA_DIR", str(shared_data_dir / "data" / "gse60450"))
    namespace: dict = {}
    exec(compile(code_of(nb), "gse60450_walkthrough", "exec"), namespace)
    adata = namespace["adata"]
    assert adata.shape == (12, 14453)
    assert {"X_mds", "X_pca"} <= set(adata.obsm) and "size_factors" in adata.obs
