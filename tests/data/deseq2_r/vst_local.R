## R reference for the VST with a local (locfit) dispersion trend: varianceStabilizingTransformation() of the
## nearly-Poisson counts of tied_low_means.R, fitType = "local" (the numerical integral of 1 / sd, splined).
## Writes vst_local_reference.csv.gz: every 10th gene, all samples. Run: Rscript tests/data/deseq2_r/vst_local.R
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
cts <- read.csv(file.path(here, "tied_low_means_counts.csv.gz"), row.names = 1, check.names = FALSE)
cts <- as.matrix(cts)
v <- suppressMessages(varianceStabilizingTransformation(cts, blind = TRUE, fitType = "local"))
keep <- seq(1, nrow(v), by = 10)
out <- cbind(gene = rownames(cts)[keep], as.data.frame(apply(v[keep, ], 2, function(z) sprintf("%.15g", z))))
con <- gzfile(file.path(here, "vst_local_reference.csv.gz"), "w")
write.csv(out, con, row.names = FALSE, quote = FALSE)
close(con)
