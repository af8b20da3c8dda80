"""Sphinx configuration for the gendex documentation (``sphinx-build -M html docs docs/_build -W``)."""

from __future__ import annotations

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
    "sphinx_autodoc_typehints",
    "sphinxcontrib.bibtex",
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".md": "myst-nb"}
master_doc = "index"
default_role = "literal"
nitpicky = True
# names that only exist under TYPE_CHECKING or have no intersphinx target
nitpick_ignore = [
    ("py:class", "numpy.typing.NDArray"),
    ("py:class", "NDArray"),
    ("py:class", "os.PathLike"),
    ("py:class", "PathLike"),
    ("py:class", "Axes"),
    ("py:class", "Figure"),
    ("py:class", "spmatrix"),
    ("py:class", "scipy.sparse.spmatrix"),
]

# autodoc / autosummary / napoleon (numpydoc sections; types come from the signatures)
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
typehints_defaults = "braces"
always_document_param_types = False
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

# bibliography
bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

intersphinx_mapping = {
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
}

# -- HTML --------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {"navigation_with_keys": False}
html_show_sphinx = False
