## locfit reference for gendex's port of DESeq2's local dispersion trend (localDispersionFit):
## locfit(logDisps ~ logMeans, weights = means) on fixed data (no random numbers), predicted on a grid that
## reaches beyond the data on both sides. Run: Rscript tests/data/deseq2_r/locfit.R (writes locfit_reference.csv)
suppressPackageStartupMessages(library(locfit))
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
out <- list()
for (n in c(60, 400, 1500)) {
  i <- seq_len(n)
  m <- exp(seq(-2, 10, length = n) + 0.3 * sin(7 * i))
  disp <- exp(log(0.05 + 1 / m) + 0.6 * sin(13 * i) + 0.2 * cos(31 * i))
  d <- data.frame(logDisps = log(disp), logMeans = log(m))
  fit <- locfit(logDisps ~ logMeans, data = d, weights = m)
  q <- exp(seq(-4, 12, length = 81))
  out[[length(out) + 1]] <- data.frame(n = n, mean = q, fit = sprintf("%.17g", exp(predict(fit, data.frame(logMeans = log(q))))))
}
write.csv(do.call(rbind, out), file.path(here, "locfit_reference.csv"), row.names = FALSE, quote = FALSE)
