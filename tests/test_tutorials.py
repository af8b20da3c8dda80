import json
import re
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
    assert [p.name for p in NOTEBOOKS] == ["gse60450_walkthrough.ipynb", "nbvae_generative_de.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_committed_without_outputs(path):
    nb = load(path)
    compile(code_of(nb), str(path), "exec")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_calls_exist(path):
    """Every ``gdx.<namespace>.<name>`` a notebook uses exists (the NB-VAE notebook is too slow to run in tests:
    GSE60450 training takes minutes on 2 cores, so this catches API drift there)."""
    import gendex as gdx

    calls = set(re.findall(r"\bgdx\.(\w+)\.(\w+)", code_of(load(path))))
    assert calls
    missing = [f"gdx.{ns}.{name}" for ns, name in sorted(calls) if not hasattr(getattr(gdx, ns, None), name)]
    assert not missing


def test_gse60450_walkthrough_runs(shared_data_dir, monkeypatch):
    nb = load(TUTORIALS / "gse60450_walkthrough.ipynb")
    monkeypatch.chdir(TUTORIALS)
    monkeypatch.setenv("GENDEX_DATA_DIR", str(shared_data_dir / "data" / "gse60450"))
    monkeypatch.setenv("GENDEX_SHARED_DIR", str(shared_data_dir))
    namespace: dict = {}
    exec(compile(code_of(nb), "gse60450_walkthrough", "exec"), namespace)
    adata = namespace["adata"]
    assert adata.shape == (12, 14453)
    assert {"X_mds", "X_pca"} <= set(adata.obsm) and "size_factors" in adata.obs
    assert {"deseq2", "deseq2_lactate_vs_virgin", "deseq2_lrt", "limma_voom"} <= set(adata.varm)
    assert adata.uns["deseq2"]["contrast"] == ["celltype", "luminal", "basal"]
    assert adata.uns["compare_deseq2_vs_limma_voom"]["summary"]["pearson"] > 0.98
    # the biology the tutorial's text states
    hallmark = namespace["gdx"].get.enrich_results(adata, "hallmark_deseq2").sort_values("score")
    assert hallmark["source"].iloc[0] == "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"
    assert "HALLMARK_OXIDATIVE_PHOSPHORYLATION" in set(hallmark["source"].iloc[-5:])
    assert adata.uns["hallmark_compare"]["summary"]["spearman"] > 0.8
