"""gendex: generative and classical differential expression for bulk RNA-seq on AnnData.

``import gendex as gdx`` gives the scanpy-style namespaces ``gdx.io``, ``gdx.datasets``, ``gdx.pp``,
``gdx.tl``, ``gdx.pl`` and ``gdx.get``. ``gdx.model`` (the scvi-tools NB-VAE) imports torch and is
loaded lazily, on first access.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import datasets, get, io, pl, pp, tl

try:
    __version__ = version("gendex")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from . import model

__all__ = ["datasets", "get", "io", "model", "pl", "pp", "tl", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "model":
        return importlib.import_module(".model", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
