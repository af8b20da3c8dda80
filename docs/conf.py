"""Sphinx configuration for the gendex documentation (``sphinx-build -M html docs docs/_build -W``).

The build needs no network: links into other projects' docs (intersphinx) are made only when their inventories
can be reached (set ``GENDEX_DOCS_OFFLINE=1`` to skip trying); offline, references to those projects render as
plain names and are not reported, while every reference to a ``gendex`` name is still checked (``nitpicky``).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from datetime import datetime
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))

# -- Project -----------------------------------------------------------------------------------------
project = "gendex"
author = "The gendex developers"
copyright = f"{datetime.now():%Y}, {author}"
try:
    release = metadata("gendex")["Version"]
except PackageNotFoundError:  # building from a source tree without an install
    release = "0.1.0"
version = release

# -- General -----------------------------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinxcontrib.bibtex",
]
# autosummary's class page: every member gendex defines (its mixins' too), documented in full; the members other
# packages' base classes bring (scvi-tools, torch, PyDESeq2) are left to their own documentation
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".md": "myst-nb"}
master_doc = "index"
default_role = "literal"
nitpicky = True
# names that only exist under TYPE_CHECKING or have no intersphinx target
nitpick_ignore = [
    ("py:class", "numpy.typing.NDArray"),
    ("py:class", "NDArray"),
    ("py:class", "npt.NDArray"),  # scvi-tools' own annotation of the inherited get_latent_representation
    ("py:class", "os.PathLike"),
    ("py:class", "PathLike"),
    ("py:class", "Axes"),
    ("py:class", "Figure"),
    ("py:class", "spmatrix"),
    ("py:class", "scipy.sparse.spmatrix"),
    # names written in docstrings or TYPE_CHECKING-only annotations (PyDESeq2's inherited docstrings among them)
    ("py:class", "ndarray"),
    ("py:class", "ArrayLike"),
    ("py:class", "pd.DataFrame"),
    ("py:class", "pd.Series"),
    ("py:class", "optional"),
    ("py:class", "np.ndarray"),
    # torch / scvi-tools names in the docstrings NBVAE inherits or writes (torch has no intersphinx entry here)
    ("py:class", "Tensor"),
    ("py:class", "Number"),
    ("py:class", "GCXS"),
]
# private modules of other packages that type hints expand to (no project documents them)
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|pandas|anndata|torch|scvi|lightning|matplotlib|pydeseq2|decoupler)\._.*"),
    (r"py:.*", r"(numpy|pandas|anndata|torch|scvi|matplotlib|pydeseq2|decoupler)(\.\w+)*\._\w+.*"),
]

# autodoc / autosummary / napoleon (numpydoc sections; types come from the signatures)
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True

# MyST and notebooks: executed at build time, cached; a failing cell fails the build
myst_enable_extensions = ["amsmath", "colon_fence", "deflist", "dollarmath", "html_image"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_merge_streams = True
nb_output_stderr = "remove"
# the notebooks' kernels inherit this process's environment: draw figures inline even when the build was started
# with a file-only backend (MPLBACKEND=agg), or the pages would have no figures
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

# bibliography
bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

_INTERSPHINX = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
    "pydeseq2": ("https://pydeseq2.readthedocs.io/en/stable/", None),
    "decoupler": ("https://decoupler.readthedocs.io/en/latest/", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
    "dask": ("https://docs.dask.org/en/stable/", None),
    "distributed": ("https://distributed.dask.org/en/stable/", None),
}
#: Top-level names of the projects above (and of those their type hints mention), for the offline build.
_EXTERNAL = r"(numpy|pandas|anndata|scanpy|scipy|matplotlib|pydeseq2|decoupler|scvi|torch|lightning|" + (
    r"dask|distributed|zarr|typing|"
    r"collections|os|pathlib|types|numbers|builtins|Ellipsis|NoneType|None|int|float|str|bool|dict|list|tuple|"
    r"object|Sequence|Mapping|Iterable|Callable|Any|Literal|NDArray|DataFrame|Series|AnnData|Axes|Figure)"
)


def _online(timeout: float = 2.0) -> bool:
    """Whether the intersphinx hosts resolve and answer (one quick probe; ``GENDEX_DOCS_OFFLINE=1`` says no)."""
    if os.environ.get("GENDEX_DOCS_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection(("docs.python.org", 443), timeout=timeout):
            return True
    except OSError:
        return False


if _online():
    intersphinx_mapping = _INTERSPHINX
else:  # offline: no intersphinx, and references into the projects above are not reported
    intersphinx_mapping = {}
    nitpick_ignore_regex += [(r"py:.*", _EXTERNAL + r"(\..*)?"), (r"py:.*", r"[A-Z]\w*\[.*")]

# -- HTML --------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {"navigation_with_keys": False}
html_show_sphinx = False


# -- Docstrings --------------------------------------------------------------------------------------
# gendex's docstrings write their ``Returns`` section as prose (types live in the signature only, see
# STYLE.md); numpydoc would read its first line as a type. Give such a section an empty type line (":") and
# indent the prose under it, so napoleon renders it as the description of the return value.
_TYPE_LINE = re.compile(r"^[\w.~`:]+(\[[\w.,\[\] |]*\])?( \| [\w.~`:]+(\[[\w.,\[\] |]*\])?)*$")


def _prose_returns(app, what, name, obj, options, lines):  # Sphinx's autodoc-process-docstring signature
    for i in range(len(lines) - 2):
        if lines[i].strip() == "Returns" and set(lines[i + 1].strip()) == {"-"}:
            start = i + 2
            end = start
            while end < len(lines) and not (
                end + 1 < len(lines) and lines[end + 1].strip() and set(lines[end + 1].strip()) == {"-"}
            ):
                end += 1
            body = lines[start:end]
            first = next((line for line in body if line.strip()), "")
            if not first or first.startswith(" ") or _TYPE_LINE.match(first.strip()):
                return  # numpydoc form ("type" then an indented description): napoleon reads it
            lines[start:end] = [":", *[f"    {line}" if line.strip() else "" for line in body]]
            return


def setup(app):
    app.connect("autodoc-process-docstring", _prose_returns, priority=400)  # before napoleon (500)
