"""The package's layering, measured: its import graph, the imports that break the layers, and lines per module.

Run ``python benchmarks/layering.py [--src SRC] [--top N]`` to print the largest modules and every layer violation
of the tree under ``SRC`` (default: this checkout's ``src/gendex``); ``tests/test_layering.py`` runs the same
check and fails on any violation. The layers are the ones ``docs/architecture.md`` draws:

    core (private _utils, _validation, _design, _contrast, _results)   stats (pure kernels)
        -> io, datasets -> pp -> model -> tl -> get -> pl -> cli / _demo

A module may import its own package and the packages below it, with these exceptions: ``stats`` imports nothing
of gendex but ``stats`` (no AnnData, no subclass of another package's classes); ``get`` and ``tl`` do not import
each other (both read results through ``gendex._results``); ``pl`` does not import ``tl`` (it reads what ``tl``
stored); the adapters to PyDESeq2 and decoupler are the only modules that import them (type hints aside).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Rank of each top-level part of gendex; a module may import parts of lower or equal rank (with the rules below).
RANKS = {
    "_core": 0,
    "_lazy": 0,  # the dask block runner: numpy only, so the stats kernels may run on its blocks
    "stats": 0,
    "io": 1,
    "datasets": 1,
    "pp": 2,
    "model": 3,
    "tl": 4,
    "get": 5,
    "pl": 6,
    "cli": 8,
    "demo": 8,
    "_demo": 8,
    "__init__": 8,
    "__main__": 8,
}
#: Pairs (importer, imported) of parts that must not import each other although their ranks would allow it.
FORBIDDEN = {("get", "tl"), ("tl", "get"), ("pl", "tl")}
#: Third-party packages that only their adapter modules may import (module paths relative to ``gendex``).
ADAPTED = {
    "pydeseq2": ("tl/_pydeseq2.py", "tl/_pydeseq2_inference.py", "tl/_deseq2_request.py"),
    "decoupler": ("tl/_decoupler.py", "datasets/_hallmark.py"),
}
#: Deliberate exceptions, each with its reason: (importer path, imported part).
ALLOWED = {
    ("stats/__init__.py", "tl"): "deprecated alias gendex.stats.BatchedInference (FutureWarning), removed in 0.2",
}


@dataclass(frozen=True)
class Import:
    """One ``import`` statement of a gendex module."""

    path: str  #: the importing file, relative to the package root (``tl/_deseq2.py``)
    line: int
    target: str  #: absolute module name (``gendex.stats._deseq2``, ``numpy``)
    type_only: bool = False  #: inside ``if TYPE_CHECKING:`` (never executed)


def part_of(path: str) -> str:
    """The top-level part a file belongs to: ``"tl"``, ``"stats"``, ``"_core"`` for the private top-level modules."""
    first = path.split("/")[0]
    if first.endswith(".py"):
        name = first[:-3]
        return name if name in RANKS else "_core"
    return first


def _module_name(path: str) -> str:
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["gendex", *parts])


def iter_imports(root: Path) -> Iterator[Import]:
    """Every import in the package under ``root`` (``src/gendex``), with relative imports made absolute."""
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        module = _module_name(rel)
        package = module if rel.endswith("__init__.py") else module.rsplit(".", 1)[0]
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for stmt in node.body
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            hint = id(node) in type_only
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(rel, node.lineno, alias.name, hint)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if node.module is None or target in ("gendex", package):  # `from . import x`: x is a module
                    for alias in node.names:
                        yield Import(rel, node.lineno, f"{target}.{alias.name}", hint)
                else:
                    yield Import(rel, node.lineno, target, hint)


def _target_part(target: str) -> str | None:
    parts = target.split(".")
    if parts[0] != "gendex":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1] if parts[1] in RANKS else "_core"


def violations(root: Path) -> list[str]:
    """Every import that breaks the layering, as ``"path:line imports target (reason)"``."""
    out = []
    for imp in iter_imports(root):
        src = part_of(imp.path)
        top = imp.target.split(".")[0]
        if top in ADAPTED and imp.path not in ADAPTED[top] and not imp.type_only:
            out.append(f"{imp.path}:{imp.line} imports {imp.target} (only its adapter modules may)")
            continue
        dst = _target_part(imp.target)
        if dst is None or dst == src or (imp.path, dst) in ALLOWED:
            continue
        unknown = [p for p in (src, dst) if p not in RANKS]
        if unknown:
            out.append(f"{imp.path}:{imp.line} imports {imp.target} (no layer for {unknown}: add it to RANKS)")
            continue
        if src == "_lazy":
            reason = "_lazy runs blocks for stats and imports no gendex module"
        elif src == "stats" and dst != "_lazy":
            reason = "stats holds pure kernels and imports only stats"
        elif (src, dst) in FORBIDDEN:
            reason = f"{src} must not import {dst}"
        elif RANKS[dst] > RANKS[src]:
            reason = f"{src} sits below {dst}"
        else:
            continue
        out.append(f"{imp.path}:{imp.line} imports {imp.target} ({reason})")
    return out


def foreign_subclasses(root: Path, part: str = "stats") -> list[str]:
    """Classes in ``part`` that subclass a class imported from another package (stats must hold none)."""
    out = []
    for file in sorted((root / part).rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        foreign = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith("gendex"):
                mod = (node.module or "").split(".")[0]
                if mod not in sys.stdlib_module_names:
                    foreign.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Import):
                foreign.update(
                    (a.asname or a.name).split(".")[0]
                    for a in node.names
                    if a.name.split(".")[0] not in sys.stdlib_module_names
                )
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    name = (
                        base.id
                        if isinstance(base, ast.Name)
                        else getattr(base.value, "id", None)
                        if isinstance(base, ast.Attribute)
                        else None
                    )
                    if name in foreign:
                        out.append(
                            f"{file.relative_to(root).as_posix()}:{node.lineno} class {node.name}({ast.unparse(base)})"
                        )
    return out


def module_lines(root: Path) -> list[tuple[int, str]]:
    """``(lines, path)`` of every module, largest first."""
    rows = [
        (len(f.read_text(encoding="utf-8").splitlines()), f.relative_to(root).as_posix()) for f in root.rglob("*.py")
    ]
    return sorted(rows, key=lambda r: (-r[0], r[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "gendex")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    rows = module_lines(args.src)
    print(f"## {args.src}: {len(rows)} modules, {sum(r[0] for r in rows)} lines; largest {args.top}\n")
    print("| lines | module |\n| ---: | --- |")
    for n, path in rows[: args.top]:
        print(f"| {n} | {path} |")
    found = violations(args.src) + [
        f"{s} (stats subclasses another package's class)" for s in foreign_subclasses(args.src)
    ]
    print(f"\n## layer violations: {len(found)}\n")
    for v in found:
        print(f"- {v}")
    used = {(i.path, _target_part(i.target)) for i in iter_imports(args.src)}
    allowed = [(path, part, why) for (path, part), why in ALLOWED.items() if (path, part) in used]
    if allowed:
        print(f"\nlisted exceptions (ALLOWED), not counted: {len(allowed)}\n")
        for path, part, why in allowed:
            print(f"- {path} imports {part}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
