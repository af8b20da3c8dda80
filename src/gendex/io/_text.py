"""Read a text file whatever its compression and encoding: the one place gendex decodes input files.

Compression is recognised from the file's first bytes (gzip, bzip2, xz), not from its name, so a gzip file
saved without ``.gz`` is still read. Text is decoded as UTF-8 (a byte-order mark is dropped); a file that is not
valid UTF-8 is read as Latin-1 with a warning naming the file and the first undecodable byte. Binary files
(a spreadsheet, a zip archive, a BAM file) are refused with an error saying what they look like.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import warnings
from pathlib import Path

#: Leading bytes of the compressed formats we decompress, and the module that does it.
_COMPRESSED = ((b"\x1f\x8b", "gzip", gzip), (b"BZh", "bzip2", bz2), (b"\xfd7zXZ\x00", "xz", lzma))
#: Leading bytes of binary formats users hand us by mistake, and what to say about them.
_BINARY = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook?); export the sheet as TSV or CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook; export the sheet as TSV or CSV"),
    (b"\x89HDF", "an HDF5 file (an .h5ad?); read it with `anndata.read_h5ad`"),
    (b"BAM\x01", "a BAM alignment file; count reads per gene first (e.g. featureCounts)"),
)


def _decompress(path: Path, raw: bytes, what: str) -> bytes:
    for magic, name, module in _COMPRESSED:
        if raw.startswith(magic):
            try:
                return module.decompress(raw)
            except (OSError, EOFError, lzma.LZMAError, ValueError) as err:
                raise ValueError(
                    f"{what} {path.name}: {name} data that cannot be decompressed ({err}); the file is probably "
                    "truncated or corrupt, download or copy it again"
                ) from err
    return raw


def read_text(path: str | Path, *, what: str = "file") -> str:
    """The decoded text of ``path`` (decompressed when its bytes say gzip, bzip2 or xz).

    ``what`` names the kind of file in messages (``"count table"``, ``"GMT file"``). Raises ``ValueError``
    for corrupt compressed data and for binary files; warns (``UserWarning``) when the text is not UTF-8 and
    is read as Latin-1 instead.
    """
    path = Path(path)
    raw = _decompress(path, path.read_bytes(), what)
    for magic, hint in _BINARY:
        if raw.startswith(magic):
            raise ValueError(f"{what} {path.name}: this is not a text table but {hint}")
    if b"\x00" in raw[:65536]:
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        hint = "it is UTF-16 text; re-save it as UTF-8" if utf16 else "it looks like a binary file, not a text table"
        raise ValueError(f"{what} {path.name}: contains NUL bytes: {hint}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        warnings.warn(
            f"{what} {path.name} is not UTF-8 (byte {raw[err.start : err.start + 1]!r} on line {line}); reading it "
            "as Latin-1. Check the names it gives, or re-save the file as UTF-8 to silence this warning.",
            UserWarning,
            stacklevel=3,
        )
        return raw.decode("latin-1")
