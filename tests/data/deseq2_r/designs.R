## R DESeq2 references for design syntax (gendex issue #12, item 5): cell-means "~0 + group", interactions,
## continuous covariates, numeric and list contrasts. Run: Rscript tests/data/deseq2_r/designs.R
## Writes designs_counts.csv.gz, designs_coldata.csv, designs_results.csv.gz (one column block per result),
## designs_model_matrices.csv (R's resultsNames per design).
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
wgz <- function(df, file) {
  con <- gzfile(file.path(here, file), "w")
  write.csv(df, con, row.names = FALSE, quote = FALSE)
  close(con)
}
set.seed(31)
n_genes <- 800
cd <- data.frame(a = factor(rep(c("X", "Y"), each = 6)), b = factor(rep(rep(c("P", "Q"), each = 3), 2)))
cd$group <- factor(paste0(cd$a, cd$b))
cd$age <- c(31, 45, 52, 38, 61, 44, 57, 36, 49, 42, 66, 40)
rownames(cd) <- sprintf("s%02d", 1:12)
base <- exp(rnorm(n_genes, 4, 1.8))
disp <- (0.05 + 1 / base) * exp(rnorm(n_genes, 0, 0.5))
eff <- function(p, s) ifelse(runif(n_genes) < p, rnorm(n_genes, 0, s), 0)
ea <- eff(0.2, 1.2); eb <- eff(0.2, 1); eab <- eff(0.1, 1.5); eage <- eff(0.2, 0.04)
x_a <- as.numeric(cd$a == "Y"); x_b <- as.numeric(cd$b == "Q")
lmu <- log(base) + outer(ea, x_a) + outer(eb, x_b) + outer(eab, x_a * x_b) + outer(eage, cd$age - 48)
cts <- matrix(rnbinom(length(lmu), mu = exp(lmu), size = 1 / disp), n_genes)
dimnames(cts) <- list(sprintf("g%03d", seq_len(n_genes)), rownames(cd))
wgz(cbind(gene = rownames(cts), as.data.frame(cts)), "designs_counts.csv.gz")
write.csv(cbind(sample = rownames(cd), cd), file.path(here, "designs_coldata.csv"), row.names = FALSE, quote = FALSE)

out <- data.frame(gene = rownames(cts))
names_out <- list()
add <- function(label, res) {
  out[[paste0(label, "__log2FoldChange")]] <<- signif(res$log2FoldChange, 10)
  out[[paste0(label, "__pvalue")]] <<- signif(res$pvalue, 10)
  out[[paste0(label, "__padj")]] <<- signif(res$padj, 10)
}
fit <- function(design) DESeq(DESeqDataSetFromMatrix(cts, cd, design = design), quiet = TRUE)

d1 <- fit(~0 + group)
names_out$cellmeans <- resultsNames(d1)
add("cellmeans_contrast_YQ_XP", results(d1, contrast = c("group", "YQ", "XP")))
add("cellmeans_list_YQ_XQ", results(d1, contrast = list("groupYQ", "groupXQ")))
add("cellmeans_numeric_interaction", results(d1, contrast = c(1, -1, -1, 1)))

d2 <- fit(~a + b + a:b)
names_out$interaction <- resultsNames(d2)
add("interaction_name", results(d2, name = "aY.bQ"))
add("interaction_contrast_a", results(d2, contrast = c("a", "Y", "X")))
add("interaction_list_a_at_Q", results(d2, contrast = list(c("a_Y_vs_X", "aY.bQ"))))
add("interaction_numeric_b_at_Y", results(d2, contrast = c(0, 0, 1, 1)))

d3 <- fit(~age + a)
names_out$continuous <- resultsNames(d3)
add("continuous_age", results(d3, name = "age"))
add("continuous_contrast_a", results(d3, contrast = c("a", "Y", "X")))

wgz(out, "designs_results.csv.gz")
mm <- do.call(rbind, lapply(names(names_out), function(k) data.frame(design = k, column = names_out[[k]])))
write.csv(mm, file.path(here, "designs_model_matrices.csv"), row.names = FALSE, quote = FALSE)
