"""GSE60450 (Fu et al. 2015): mouse mammary basal and luminal cells across virgin, pregnant and lactating mice."""

from __future__ import annotations

import hashlib
import logging
import os
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ..io._counts import join_sample_sheet, read_counts
from ._download import Remote, cache_dir, fetch

logger = logging.getLogger(__name__)

GEO_FILE = "GSE60450_Lactation-GenewiseCounts.txt.gz"
GEO_URL = f"https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE60450&format=file&file={GEO_FILE}"
LOCAL_FILE = "counts_matrix.tsv"
#: GEO serves the file itself; its byte size and SHA-256 could not be pinned offline (the shared copy is a
#: re-export without the ``Length`` column), so the download is checked by its content instead: the SHA-256 of
#: the sample names, the gene IDs and the int64 counts (see :func:`content_digest`), computed from the shared
#: ``counts_matrix.tsv``, which holds GEO's counts.
GEO_REMOTE = Remote(url=GEO_URL, filename=GEO_FILE, what="the GSE60450 counts (GEO)")
SHAPE = (12, 27179)
CONTENT_SHA256 = "4eadc4c690b6fce597c677f603ea47ec77fddb71a5917857122753ca75bca78d"
OFFLINE_HINT = (
    "Without the network, pass a local copy with `gdx.datasets.gse60450(path=...)` (the file, or a folder holding "
    f"{LOCAL_FILE!r} or {GEO_FILE!r}) or set the environment variable GENDEX_DATA_DIR to that folder."
)

# The sample annotation is a fact from the paper (GEO sample characteristics), not a download.
# MCL1-D* are basal cells and MCL1-L* luminal cells; each cell type spans virgin, pregnant and lactate.
_SAMPLES = [
    ("MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1", "MCL1-DG", "basal", "virgin"),
    ("MCL1-DH_BC2CTUACXX_CAGATC_L002_R1", "MCL1-DH", "basal", "virgin"),
    ("MCL1-DI_BC2CTUACXX_ACAGTG_L002_R1", "MCL1-DI", "basal", "pregnant"),
    ("MCL1-DJ_BC2CTUACXX_CGATGT_L002_R1", "MCL1-DJ", "basal", "pregnant"),
    ("MCL1-DK_BC2CTUACXX_TTAGGC_L002_R1", "MCL1-DK", "basal", "lactate"),
    ("MCL1-DL_BC2CTUACXX_ATCACG_L002_R1", "MCL1-DL", "basal", "lactate"),
    ("MCL1-LA_BC2CTUACXX_GATCAG_L001_R1", "MCL1-LA", "luminal", "virgin"),
    ("MCL1-LB_BC2CTUACXX_TGACCA_L001_R1", "MCL1-LB", "luminal", "virgin"),
    ("MCL1-LC_BC2CTUACXX_GCCAAT_L001_R1", "MCL1-LC", "luminal", "pregnant"),
    ("MCL1-LD_BC2CTUACXX_GGCTAC_L001_R1", "MCL1-LD", "luminal", "pregnant"),
    ("MCL1-LE_BC2CTUACXX_TAGCTT_L001_R1", "MCL1-LE", "luminal", "lactate"),
    ("MCL1-LF_BC2CTUACXX_CTTGTA_L001_R1", "MCL1-LF", "luminal", "lactate"),
]


def sample_sheet() -> pd.DataFrame:
    """The GSE60450 sample sheet: ``name``, ``celltype``, ``status``, ``group``, indexed by GEO column name."""
    df = pd.DataFrame(_SAMPLES, columns=["sample", "name", "celltype", "status"]).set_index("sample")
    df.index.name = None
    df["group"] = df["celltype"] + "." + df["status"]
    df["celltype"] = pd.Categorical(df["celltype"], categories=["basal", "luminal"])
    df["status"] = pd.Categorical(df["status"], categories=["virgin", "pregnant", "lactate"])
    df["group"] = pd.Categorical(
        df["group"], categories=[f"{c}.{s}" for c in ("basal", "luminal") for s in ("virgin", "pregnant", "lactate")]
    )
    return df


def content_digest(adata: AnnData) -> str:
    """SHA-256 of the sample names, gene IDs and counts (little-endian int64, samples x genes) of ``adata``."""
    digest = hashlib.sha256()
    digest.update("\t".join(adata.obs_names).encode() + b"\n")
    digest.update("\t".join(adata.var_names).encode() + b"\n")
    digest.update(np.ascontiguousarray(adata.layers["counts"], dtype="<i8").tobytes())
    return digest.hexdigest()


def _check_geo_file(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` holds GEO's GSE60450 counts (shape and content digest)."""
    adata = read_counts(path)
    if adata.shape != SHAPE:
        raise ValueError(
            f"it holds {adata.shape[0]} samples x {adata.shape[1]} genes, {SHAPE[0]} x {SHAPE[1]} expected"
        )
    if content_digest(adata) != CONTENT_SHA256:
        raise ValueError("its counts differ from GEO's GSE60450 counts (content checksum)")


def _find_local(path: Path) -> Path:
    if path.is_file():
        return path
    for name in (LOCAL_FILE, GEO_FILE):
        if (path / name).is_file():
            return path / name
        if (path / "gse60450" / name).is_file():
            return path / "gse60450" / name
    raise FileNotFoundError(f"no GSE60450 counts in {path}: expected {LOCAL_FILE!r} or {GEO_FILE!r}")


def gse60450(path: str | PathLike | None = None) -> AnnData:
    """GSE60450: 12 mouse mammary samples (basal/luminal x virgin/pregnant/lactate, 2 each) x 27,179 genes.

    The counts are read from ``path`` when given, else from ``$GENDEX_DATA_DIR``, else from the cache
    (``$XDG_CACHE_HOME/gendex``, by default ``~/.cache/gendex``), where GEO's
    ``GSE60450_Lactation-GenewiseCounts.txt.gz`` is downloaded once (a progress bar shows in a terminal). The
    download is checked (complete, and the counts' checksum pinned in gendex) before it is moved into the cache,
    so the cache never holds a partial file; a cached file that fails the check is downloaded again. ``path``
    may be the file itself or a folder holding ``counts_matrix.tsv`` (the counts without the ``Length`` column)
    or GEO's file.

    Parameters
    ----------
    path
        A local copy of the counts (file or folder).

    Returns
    -------
    AnnData of 12 x 27,179 with integer counts in ``X`` and ``layers["counts"]``, Entrez IDs (str) as
    ``var_names``, ``var["length"]`` when the file has it, and the true annotation in ``obs``: ``name``,
    ``celltype`` (``basal``: MCL1-D*, ``luminal``: MCL1-L*), ``status`` (``virgin``, ``pregnant``,
    ``lactate``) and ``group``, as categoricals with the first level as reference.

    Raises
    ------
    ConnectionError
        The download failed (no network, server error, cut short) or gave other data; the message names
        ``path=`` and ``GENDEX_DATA_DIR``. Nothing is left in the cache.
    FileNotFoundError
        ``path`` (or ``$GENDEX_DATA_DIR``) holds no GSE60450 counts.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.gse60450("../shared/data/gse60450")  # doctest: +SKIP
    >>> adata.obs["celltype"].value_counts().to_dict()  # doctest: +SKIP
    {'basal': 6, 'luminal': 6}
    """
    if path is None and os.environ.get("GENDEX_DATA_DIR"):
        path = os.environ["GENDEX_DATA_DIR"]
    if path is not None:
        source = _find_local(Path(path))
    else:
        logger.info("GSE60450 counts: cache %s", cache_dir() / GEO_REMOTE.filename)
        source = fetch(GEO_REMOTE, check=_check_geo_file, offline_hint=OFFLINE_HINT)
    adata = read_counts(source)
    sheet = sample_sheet()
    adata.obs = join_sample_sheet(adata.obs_names, sheet)
    for col in ("celltype", "status", "group"):
        adata.obs[col] = adata.obs[col].cat.set_categories(sheet[col].cat.categories)
    adata.uns["dataset"] = {"name": "GSE60450", "source": str(source)}
    return adata
