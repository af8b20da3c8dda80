"""The one downloader: behind :func:`gendex.datasets.gse60450` and :func:`gendex.datasets.hallmark`.

A file is downloaded into a temporary file inside the cache folder, checked (the length the server announced,
then the size and SHA-256 pinned here when they are known, then a content check given by the caller) and only
then renamed into place with :func:`os.replace`, which is atomic on one file system: the cache holds either the
whole, checked file or nothing. On any failure the temporary file is removed, and so are the cache folders this
call created. A cached file that fails the checks is fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Remote:
    """A file we download: where from, its name in the cache, and what we know about it to check it.

    ``size`` (bytes) and ``sha256`` (hex digest) are pinned when they are known; ``None`` skips that check (the
    content check of the caller still runs).
    """

    url: str
    filename: str
    what: str
    size: int | None = None
    sha256: str | None = None


class DownloadError(ConnectionError):
    """A download failed or gave a file that fails its checks; nothing was left in the cache."""


def cache_dir() -> Path:
    """The cache folder: ``$XDG_CACHE_HOME/gendex``, else ``~/.cache/gendex``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "gendex"


def sha256sum(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(path: Path, remote: Remote, check: Callable[[Path], None] | None) -> str | None:
    """Why ``path`` is not the file ``remote`` describes, or None when it passes every check."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"it has {size:,} bytes, {remote.size:,} expected"
    if remote.sha256 is not None and (digest := sha256sum(path)) != remote.sha256:
        return f"its SHA-256 is {digest}, {remote.sha256} expected"
    if check is not None:
        try:
            check(path)
        except (ValueError, OSError, EOFError) as err:
            return str(err)
    return None


def _missing_parents(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``folder``, innermost first."""
    out = []
    while not folder.exists():
        out.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    return out


def _progress(total: int | None, desc: str, *, show: bool | None):
    """A tqdm bar when asked (``show=True``) or, by default, only when stderr is a terminal."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc)


def _stream(remote: Remote, fh, *, timeout: float, progress: bool | None) -> int:
    """Copy the response body into ``fh``; raise :class:`DownloadError` when it ends before its announced length."""
    with urllib.request.urlopen(remote.url, timeout=timeout) as response:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        n = 0
        with _progress(total, Path(remote.filename).name, show=progress) as bar:
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                n += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    if total is not None and n != total:
        raise DownloadError(f"the download of {remote.what} stopped after {n:,} of {total:,} bytes")
    return n


def fetch(
    remote: Remote,
    *,
    check: Callable[[Path], None] | None = None,
    offline_hint: str = "",
    timeout: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """Path of ``remote`` in the cache, downloading it first when it is absent or fails its checks.

    Parameters
    ----------
    remote
        What to fetch.
    check
        Content check run on the downloaded (and on a cached) file; raises ``ValueError`` when the file is not
        what is expected.
    offline_hint
        Appended to every error: how to do without the download (a local ``path=``, an environment variable).
    timeout
        Seconds to wait for the server.
    progress
        Show a progress bar; by default only when stderr is a terminal.

    Raises
    ------
    DownloadError
        (a ``ConnectionError``) The server cannot be reached or answers with an error, the transfer is cut short,
        or the file fails its checks. The cache is left as it was, with no temporary file and no new folder.
    """
    dest = cache_dir() / remote.filename
    hint = f" {offline_hint}" if offline_hint else ""
    if dest.is_file():
        problem = _problem(dest, remote, check)
        if problem is None:
            return dest
        logger.warning("cached %s (%s) fails its check (%s); downloading it again", remote.what, dest, problem)
    created = _missing_parents(dest.parent)
    tmp: Path | None = None
    done = False
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as fh:
            _stream(remote, fh, timeout=timeout, progress=progress)
        problem = _problem(tmp, remote, check)
        if problem is not None:
            raise DownloadError(
                f"the file downloaded for {remote.what} from {remote.url} is not the expected one: {problem}"
            )
        os.replace(tmp, dest)
        done = True
    except DownloadError as err:
        raise DownloadError(f"{err}; nothing was kept in {dest.parent}.{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        if isinstance(err, urllib.error.HTTPError):
            err.close()  # it holds the open response
        # a plain URLError (no connection, unknown host) says why in .reason; an HTTPError's own text is clearer
        reason = (
            err.reason
            if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError)
            else err
        )
        raise DownloadError(
            f"could not download {remote.what} from {remote.url} ({type(err).__name__}: {reason}).{hint}"
        ) from None
    finally:
        if not done:  # also on KeyboardInterrupt
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            for folder in created:  # innermost first; only the ones this call made, and only when empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
    logger.info("downloaded %s into %s", remote.what, dest)
    return dest
