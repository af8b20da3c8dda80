"""The layering of docs/architecture.md holds: no import breaks it (computed by benchmarks/layering.py)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "layering.py"


@pytest.fixture(scope="module")
def layering():
    spec = importlib.util.spec_from_file_location("gendex_layering", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_no_layer_violations(layering):
    assert layering.violations(ROOT / "src" / "gendex") == []


def test_stats_subclasses_no_foreign_class(layering):
    assert layering.foreign_subclasses(ROOT / "src" / "gendex") == []


def test_stats_never_imports_anndata(layering):
    hits = [
        i
        for i in layering.iter_imports(ROOT / "src" / "gendex")
        if i.path.startswith("stats/") and i.target.split(".")[0] == "anndata"
    ]
    assert hits == []


def test_checker_catches_each_kind_of_violation(layering, tmp_path):
    pkg = tmp_path / "gendex"
    for rel, text in {
        "stats/__init__.py": "",
        "stats/_k.py": "from .._utils import x\nfrom pydeseq2.inference import Inference\n\nclass K(Inference): ...\n",
        "_utils.py": "x = 1\n",
        "tl/__init__.py": "",
        "tl/_a.py": "from ..get import de_results\nfrom ..pl import volcano\n",
        "get/__init__.py": "from ..tl import _a\n",
        "pl/__init__.py": "from ..tl._a import helper\nfrom .._utils import x\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    found = layering.violations(pkg)
    assert any(v.startswith("stats/_k.py:1") and "pure kernels" in v for v in found)
    assert any(v.startswith("stats/_k.py:2") and "adapter" in v for v in found)
    assert any(v.startswith("tl/_a.py:1") and "tl must not import get" in v for v in found)
    assert any(v.startswith("tl/_a.py:2") and "tl sits below pl" in v for v in found)
    assert any(v.startswith("get/__init__.py:1") for v in found)
    assert any(v.startswith("pl/__init__.py:1") for v in found)
    assert not any(v.startswith("pl/__init__.py:2") for v in found)  # pl may use the private core
    assert layering.foreign_subclasses(pkg) == ["stats/_k.py:4 class K(Inference)"]
