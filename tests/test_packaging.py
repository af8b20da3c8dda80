"""pyproject.toml tells the truth: every package the library imports is declared, and every declared one is used."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gendex"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(group: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in deps}


def _imported_modules(root: Path) -> dict[str, str]:
    """Top-level third-party modules imported anywhere under ``root`` -> one file importing it."""
    found: dict[str, str] = {}
    for file in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "gendex" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(file.relative_to(ROOT)))
    return found


@pytest.fixture(scope="module")
def imported_distributions():
    dists = packages_distributions()
    out = {}
    for module, where in _imported_modules(SRC).items():
        if module not in dists:
            pytest.fail(f"{where} imports {module!r}, which no installed distribution provides")
        for dist in dists[module]:
            out[_norm(dist)] = where
    return out


#: optional extras the library may import, only inside the functions that need them
OPTIONAL_EXTRAS = ("dask",)


def test_every_import_of_the_library_is_declared(imported_distributions):
    allowed = _declared().union(*(_declared(extra) for extra in OPTIONAL_EXTRAS))
    missing = {d: where for d, where in imported_distributions.items() if d not in allowed}
    assert missing == {}, "imported by the library but not in [project.dependencies] or an optional extra"


def test_optional_extras_are_never_imported_at_module_level():
    optional = {"dask", "distributed"}
    for file in sorted(SRC.rglob("*.py")):
        for node in ast.parse(file.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                top = {n.split(".")[0] for n in names}
                assert not top & optional, f"{file.relative_to(ROOT)} imports {top & optional} at module level"


def test_every_declared_dependency_is_imported(imported_distributions):
    unused = _declared() - set(imported_distributions)
    assert unused == set(), "declared in [project.dependencies] but never imported by src/gendex"


def test_test_only_packages_are_test_extras():
    # scanpy (the interop test) and statsmodels (a lowess cross-check) are used by tests, not by the library
    assert {"scanpy", "statsmodels", "mypy"} <= _declared("test")
    assert not {"scanpy", "statsmodels"} & _declared()
