"""GSE60450 (Fu et al. 2015): mouse mammary basal and luminal cells across virgin, pregnant and lactating mice."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from os import PathLike
from pathlib import Path

import pandas as pd
from anndata import AnnData

from ..io._counts import join_sample_sheet, read_counts

logger = logging.getLogger(__name__)

GEO_FILE = "GSE60450_Lactation-GenewiseCounts.txt.gz"
GEO_URL = f"https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE60450&format=file&file={GEO_FILE}"
LOCAL_FILE = "counts_matrix.tsv"

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


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "gendex"


def _download(url: str, dest: Path) -> None:  # pragma: no cover - network, never run in tests
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp,
            tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar,
        ):
            while chunk := response.read(1 << 16):
                tmp.write(chunk)
                bar.update(len(chunk))
    shutil.move(tmp.name, dest)


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
    (``~/.cache/gendex``), where GEO's ``GSE60450_Lactation-GenewiseCounts.txt.gz`` is downloaded once with
    a progress bar. ``path`` may be the file itself or a folder holding ``counts_matrix.tsv`` (the counts
    without the ``Length`` column) or GEO's file.

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
        source = _cache_dir() / GEO_FILE
        if not source.is_file():
            logger.info("downloading GSE60450 counts from GEO into %s", source)
            _download(GEO_URL, source)
    adata = read_counts(source)
    sheet = sample_sheet()
    adata.obs = join_sample_sheet(adata.obs_names, sheet)
    for col in ("celltype", "status", "group"):
        adata.obs[col] = adata.obs[col].cat.set_categories(sheet[col].cat.categories)
    adata.uns["dataset"] = {"name": "GSE60450", "source": str(source)}
    return adata
