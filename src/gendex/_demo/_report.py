"""The demo's report writer and its safe output folder.

The run writes into a hidden temporary folder beside ``--out`` and renames it into place only when every step
succeeded, ``report.md`` written last: a failed or interrupted run leaves nothing behind, and no reader ever
sees a report that links to a file not yet written. A previous demo's folder at ``--out`` is replaced only then.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ._state import Demo


def write_report(demo: Demo, timings: list[tuple[str, float]], argv: Sequence[str]) -> Path:
    """Write ``report.md`` atomically: the summary, a section per step (notes, figures, tables), run times."""
    import gendex as gdx

    lines = ["# gendex demo report", "", f"gendex {gdx.__version__}; command: `gendex {shlex.join(argv)}`", ""]
    if demo.findings:
        lines += ["## Summary", ""] + [f"- {text}" for text in demo.findings] + [""]
    for title, body in demo.sections:
        lines += [f"## {title}", ""]
        for item in body:
            lines += [item, ""]
    lines += ["## Run time", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {title} | {seconds:.1f} |" for title, seconds in timings]
    lines += [f"| total | {sum(s for _, s in timings):.1f} |", ""]
    path = demo.out / "report.md"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("\n".join(lines))
    os.replace(partial, path)
    return path


class OutputFolder:
    """``with OutputFolder(out) as tmp:`` write into ``tmp``; on success it becomes ``out``, on error it is removed.

    ``tmp`` is created in the nearest existing folder above ``out`` (same file system, so the final rename is
    atomic); missing parents of ``out`` are created only at the end.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        parent = self.out.absolute().parent
        while not parent.exists():
            parent = parent.parent
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".partial", dir=parent))
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        assert self.tmp is not None
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self.out.absolute().parent.mkdir(parents=True, exist_ok=True)
        old = None
        if self.out.exists():  # a previous demo's folder (checked before the run): moved aside, then removed
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".old", dir=self.out.absolute().parent))
            os.replace(self.out, old / self.out.name)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
