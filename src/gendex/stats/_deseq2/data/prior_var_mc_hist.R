## Regenerates prior_var_mc_hist.csv.gz: the Monte-Carlo histograms that R DESeq2's
## estimateDispersionsPriorVar() draws when a design has 1-3 residual degrees of freedom.
## For each residual df (1, 2, 3) the RNG is seeded with set.seed(2), as DESeq2 does, and for each of the
## 200 prior variances v of seq(0, 8, length = 200), in order, 10,000 values of
## log(chi2_df) + N(0, v) - log(df) are drawn and binned on the breaks -10, -9.5, ..., 10 (hist() defaults).
## Only the bin counts are stored; they depend on nothing but the df and R's default RNG (R >= 3.6).
## Run: Rscript prior_var_mc_hist.R   (writes into the working directory)
brks <- seq(-10, 10, by = 0.5)
grid <- seq(from = 0, to = 8, length = 200)
rows <- list()
for (df in 1:3) {
  set.seed(2)
  for (i in seq_along(grid)) {
    draws <- log(rchisq(10000, df = df)) + rnorm(10000, 0, sqrt(grid[i])) - log(df)
    draws <- draws[draws > min(brks) & draws < max(brks)]
    rows[[length(rows) + 1]] <- c(df, i - 1, hist(draws, breaks = brks, plot = FALSE)$counts)
  }
}
tab <- do.call(rbind, rows)
colnames(tab) <- c("df", "var_index", sprintf("bin%02d", 0:39))
con <- gzfile("prior_var_mc_hist.csv.gz", "w")
write.csv(tab, con, row.names = FALSE, quote = FALSE)
close(con)
