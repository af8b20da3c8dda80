"""Speed of gendex's DESeq2 transformations against R DESeq2 on GSE60450 (18,418 genes with rowSums >= 10).

Usage: ``python benchmarks/deseq2_transforms.py`` (needs ../shared/data/gse60450; R rows when ``Rscript`` with
DESeq2 is installed). Each transform is timed in this process after one warm-up call (gendex) and inside one
Rscript run (R, ``system.time`` of the call alone, after loading the data), so both exclude start-up. Prints a
table with the ratio R / gendex and the maximum absolute difference of the values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import gendex as gdx  # noqa: E402

R_CODE = r"""
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
cts <- read.delim(file.path(args[1], "counts_matrix.tsv"), check.names = FALSE)
rownames(cts) <- as.character(cts$EntrezGeneID); cts$EntrezGeneID <- NULL
cts <- as.matrix(cts); storage.mode(cts) <- "integer"
cts <- cts[rowSums(cts) >= 10, ]
dds <- DESeqDataSetFromMatrix(cts, data.frame(row.names = colnames(cts), x = rep(1, ncol(cts))), ~1)
out <- list()
for (k in c("vst", "varianceStabilizingTransformation", "rlog")) {
  f <- get(k)
  st <- system.time(v <- f(dds, blind = TRUE))
  write.csv(assay(v), file.path(args[2], paste0(k, ".csv")))
  out[[k]] <- unname(st[["elapsed"]])
}
cat(jsonlite::toJSON(out, auto_unbox = TRUE), "\n")
"""


def main() -> None:
    data = ROOT.parent / "shared" / "data" / "gse60450"
    ad = gdx.datasets.gse60450(data)
    gdx.pp.filter_genes(ad, min_total_count=10)
    runs = {
        "vst": lambda: gdx.pp.vst(ad, copy=True),
        "varianceStabilizingTransformation": lambda: gdx.pp.vst(ad, nsub=None, copy=True),
        "rlog": lambda: gdx.pp.rlog(ad, copy=True),
    }
    ours, values = {}, {}
    for name, run in runs.items():
        run()
        t = time.perf_counter()
        out = run()
        ours[name] = time.perf_counter() - t
        values[name] = out.layers["rlog" if name == "rlog" else "vst"]
    r_times: dict[str, float] = {}
    diffs: dict[str, float] = {}
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "t.R"
            script.write_text(R_CODE)
            proc = subprocess.run(["Rscript", str(script), str(data), tmp], capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                r_times = json.loads(proc.stdout.strip().splitlines()[-1])
                import pandas as pd

                for name in runs:
                    ref = pd.read_csv(Path(tmp) / f"{name}.csv", index_col=0)
                    ref.index = ref.index.astype(str)
                    diffs[name] = float(np.max(np.abs(values[name] - ref.loc[list(ad.var_names)].to_numpy().T)))
            else:
                print(proc.stderr[-2000:])
    lines = ["| transform | gendex s | R s | R / gendex | max abs diff vs R |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in runs:
        r = r_times.get(name)
        ratio = f"{r / ours[name]:.1f}x" if r else "-"
        diff = f"{diffs[name]:.1e}" if name in diffs else "-"
        lines.append(f"| {name} | {ours[name]:.3f} | {r if r is not None else '-'} | {ratio} | {diff} |")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "deseq2_transforms.md"
    out.parent.mkdir(exist_ok=True)
    head = "# DESeq2 transforms on GSE60450 (python benchmarks/deseq2_transforms.py; gendex and R in one run)\n\n"
    out.write_text(head + text + "\n")


if __name__ == "__main__":
    main()
