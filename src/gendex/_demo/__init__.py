"""``gendex demo``: the workflow on example or user data, written up as figures, tables and ``report.md``.

- :mod:`._inputs`: read the data and check every option before the first step (:func:`prepare`);
- :mod:`._steps`, :mod:`._nbvae_steps`: the steps, small functions over the public API (:data:`STEPS`);
- :mod:`._report`: the report writer and the output folder that appears only when the run succeeded;
- :mod:`._state`: the :class:`Demo` state the steps share, :class:`Step`, the progress logger.

``gendex.cli`` is the argparse shell over :func:`run_demo`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ._inputs import InputError, prepare
from ._nbvae_steps import step_generative_de, step_latent_path, step_nbvae
from ._report import OutputFolder, write_report
from ._state import ALPHA, Demo, Progress, Step
from ._steps import (
    step_compare_classical,
    step_deseq2,
    step_enrichment,
    step_evaluate,
    step_filter,
    step_limma,
    step_load,
    step_mds,
    step_pca,
    step_qc,
    step_size_factors,
)

#: The demo's steps, in report order; a new step is a function of a :class:`Demo` and a line here.
STEPS: list[Step] = [
    Step("Data", step_load),
    Step("Quality control", step_qc),
    Step("Filtering low-expression genes", step_filter),
    Step("Size factors", step_size_factors),
    Step("MDS", step_mds),
    Step("PCA", step_pca),
    Step("DESeq2", step_deseq2),
    Step("limma-voom", step_limma),
    Step("DESeq2 vs limma-voom", step_compare_classical),
    Step("NB-VAE", step_nbvae, own_line=True),
    Step("Generative differential expression", step_generative_de),
    Step("Latent path", step_latent_path),
    Step("Evaluation against the truth", step_evaluate),
    Step("Gene-set enrichment", step_enrichment),
]


def run_demo(
    args: argparse.Namespace,
    argv: Sequence[str],
    *,
    steps: Sequence[Step] | None = None,
    stream: TextIO | None = None,
) -> Path:
    """Check the inputs, run ``steps`` (default :data:`STEPS`), save ``results.h5ad`` and write ``report.md``.

    Raises :class:`InputError` before writing anything when an input is bad; any other error during the steps
    propagates after the partial output is removed. Returns the path of ``report.md`` in ``args.out``.
    """
    steps = STEPS if steps is None else list(steps)
    stream = sys.stderr if stream is None else stream
    out = Path(args.out)
    progress = Progress(len(steps) + 1, stream)
    started = progress.step(0, "Reading and checking the inputs")
    try:
        demo = prepare(args, out)
    except BaseException:
        progress.failed()
        raise
    progress.done(started)
    demo.terminal = bool(getattr(stream, "isatty", lambda: False)())
    timings = []
    with OutputFolder(out) as tmp:
        demo.out = tmp
        for i, step in enumerate(steps, start=1):
            demo.sections.append((step.title, []))
            started = progress.step(i, step.title, own_line=step.own_line and demo.terminal)
            try:
                step.run(demo)
            except BaseException:
                progress.failed()
                raise
            timings.append((step.title, progress.done(started)))
        started = progress.step(len(steps) + 1, "Saving results")
        demo.data.write_h5ad(tmp / "results.h5ad")
        demo.sections.append(
            (
                "Results",
                ["The AnnData with every result (obs, var, obsm, varm, uns, layers) is [results.h5ad](results.h5ad)."],
            )
        )
        timings.append(("Saving results", progress.done(started)))
        write_report(demo, timings, argv)
    demo.out = out
    stream.write(f"report: {out / 'report.md'}\n")
    return out / "report.md"


__all__ = ["ALPHA", "STEPS", "Demo", "InputError", "OutputFolder", "Progress", "Step", "prepare", "run_demo"]
