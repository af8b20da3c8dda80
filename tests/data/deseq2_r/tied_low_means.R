## R DESeq2 reference for independent filtering on many tied low means (gendex issue #12, item 2):
## 5 vs 5 nearly-Poisson technical replicates, 5,000 genes, many with baseMean < 0.3.
## Run: Rscript tests/data/deseq2_r/tied_low_means.R  (writes beside this script)
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
wgz <- function(df, file) {
  con <- gzfile(file.path(here, file), "w")
  write.csv(df, con, row.names = FALSE, quote = FALSE)
  close(con)
}
set.seed(21)
n_genes <- 5000
base <- exp(rnorm(n_genes, -0.5, 2.2))
lfc <- ifelse(runif(n_genes) < 0.15, sample(c(-1.5, 1.5), n_genes, replace = TRUE), 0)
cond <- factor(rep(c("A", "B"), each = 5))
mu <- base * 2^outer(lfc, as.numeric(cond) - 1)
## dispersion 0.001: technical replicates are nearly Poisson, so R's parametric trend fails and DESeq() substitutes
## its local (locfit) trend
cts <- matrix(rnbinom(length(mu), mu = mu, size = 1000), n_genes)
dimnames(cts) <- list(sprintf("g%04d", seq_len(n_genes)), sprintf("s%02d", 1:10))
wgz(cbind(gene = rownames(cts), as.data.frame(cts)), "tied_low_means_counts.csv.gz")
dds <- DESeqDataSetFromMatrix(cts, data.frame(condition = cond, row.names = colnames(cts)), ~condition)
dds <- DESeq(dds, quiet = TRUE)
res <- results(dds, contrast = c("condition", "B", "A"))
out <- data.frame(gene = rownames(res), baseMean = signif(res$baseMean, 10), pvalue = signif(res$pvalue, 10),
                  padj = signif(res$padj, 10), dispFit = signif(mcols(dds)$dispFit, 10))
wgz(out, "tied_low_means_results.csv.gz")
md <- metadata(res)
writeLines(c("key,value", sprintf("filterThreshold,%.17g", md$filterThreshold), sprintf("filterTheta,%.17g", md$filterTheta),
             sprintf("n_na_padj,%d", sum(is.na(res$padj))), sprintf("n_na_pvalue,%d", sum(is.na(res$pvalue))),
             sprintf("n_baseMean_below_0.3,%d", sum(res$baseMean < 0.3)), sprintf("n_padj_lt_0.1,%d", sum(res$padj < 0.1, na.rm = TRUE))),
           file.path(here, "tied_low_means_summary.csv"))
write.csv(data.frame(theta = md$filterNumRej$theta, numRej = md$filterNumRej$numRej),
          file.path(here, "tied_low_means_numrej.csv"), row.names = FALSE, quote = FALSE)
