## R DESeq2 references for designs with 1-3 residual degrees of freedom (gendex issue #12, item 1).
## Run from anywhere: Rscript tests/data/deseq2_r/small_df.R  (writes beside this script).
## Simulated sets (counts written here: sim_<name>_counts.csv.gz, sim_<name>_coldata.csv) and GSE60450 subsets
## (read from $GSE60450_DIR or ../shared/data/gse60450 beside the repository; only results are written).
## Per set: <name>_results.csv.gz (DESeq() then results(contrast), R defaults: alpha 0.1, Cook's and independent
## filtering on) with the dispersions; small_df_summary.csv with the prior variance and filter threshold.
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
gse_dir <- Sys.getenv("GSE60450_DIR", file.path(here, "..", "..", "..", "..", "shared", "data", "gse60450"))

wgz <- function(df, file) {
  con <- gzfile(file.path(here, file), "w")
  write.csv(df, con, row.names = FALSE, quote = FALSE)
  close(con)
}

summary_rows <- list()
run <- function(name, counts, coldata, design, contrast) {
  dds <- DESeqDataSetFromMatrix(counts, coldata, design = design)
  dds <- DESeq(dds, quiet = TRUE)
  res <- results(dds, contrast = contrast)
  mc <- mcols(dds)
  out <- data.frame(gene = rownames(dds), baseMean = res$baseMean, log2FoldChange = res$log2FoldChange,
                    pvalue = res$pvalue, padj = res$padj, dispGeneEst = mc$dispGeneEst, dispFit = mc$dispFit)
  for (j in 2:ncol(out)) out[[j]] <- signif(out[[j]], 10)
  wgz(out, paste0(name, "_results.csv.gz"))
  mm <- model.matrix(design(dds), colData(dds))
  fun <- dispersionFunction(dds)
  summary_rows[[name]] <<- data.frame(
    set = name, design = paste(deparse(design), collapse = ""), factor = contrast[1], test = contrast[2],
    reference = contrast[3], samples = paste(colnames(dds), collapse = ";"), n_samples = nrow(mm), n_coefs = ncol(mm),
    dispPriorVar = sprintf("%.17g", attr(fun, "dispPriorVar")),
    varLogDispEsts = sprintf("%.17g", attr(fun, "varLogDispEsts")),
    filterThreshold = sprintf("%.17g", metadata(res)$filterThreshold),
    padj_lt_0.1 = sum(res$padj < 0.1, na.rm = TRUE), na_padj = sum(is.na(res$padj)))
  cat(name, ": m - p =", nrow(mm) - ncol(mm), " dispPriorVar =", attr(fun, "dispPriorVar"), "\n")
}

## ---- simulated: NB counts with a dispersion trend, 10% DE genes
simulate <- function(n_genes, coldata, effect_col, seed, donor_sd = 0) {
  set.seed(seed)
  base <- exp(rnorm(n_genes, 4, 2))
  disp <- (0.04 + 1.5 / base) * exp(rnorm(n_genes, 0, 1))
  lfc <- ifelse(runif(n_genes) < 0.1, rnorm(n_genes, 0, 1.5), 0)
  x <- as.numeric(coldata[[effect_col]]) - 1
  donor <- if ("donor" %in% names(coldata)) {
    eff <- matrix(rnorm(n_genes * nlevels(coldata$donor), 0, donor_sd), n_genes)
    eff[, as.integer(coldata$donor)]
  } else 0
  sf <- exp(rnorm(nrow(coldata), 0, 0.2))
  mu <- base * exp(outer(lfc * log(2), x) + donor) * rep(sf, each = n_genes)
  m <- matrix(rnbinom(length(mu), mu = mu, size = 1 / disp), n_genes)
  dimnames(m) <- list(sprintf("g%04d", seq_len(n_genes)), rownames(coldata))
  m
}
sim_sets <- list(
  list("sim_2v1", data.frame(condition = factor(c("A", "A", "B"))), 11),
  list("sim_2v2", data.frame(condition = factor(c("A", "A", "B", "B"))), 12),
  list("sim_3v2", data.frame(condition = factor(c("A", "A", "A", "B", "B"))), 13))
for (s in sim_sets) {
  cd <- s[[2]]; rownames(cd) <- sprintf("s%d", seq_len(nrow(cd)))
  cts <- simulate(2000, cd, "condition", s[[3]])
  wgz(cbind(gene = rownames(cts), as.data.frame(cts)), paste0(s[[1]], "_counts.csv.gz"))
  write.csv(cbind(sample = rownames(cd), cd), file.path(here, paste0(s[[1]], "_coldata.csv")),
            row.names = FALSE, quote = FALSE)
  run(s[[1]], cts, cd, ~condition, c("condition", "B", "A"))
}
cd <- data.frame(donor = factor(rep(c("d1", "d2", "d3", "d4"), each = 2)),
                 treatment = factor(rep(c("C", "T"), 4)))
rownames(cd) <- sprintf("s%d", 1:8)
cts <- simulate(2000, cd, "treatment", 14, donor_sd = 0.4)
wgz(cbind(gene = rownames(cts), as.data.frame(cts)), "sim_paired_counts.csv.gz")
write.csv(cbind(sample = rownames(cd), cd), file.path(here, "sim_paired_coldata.csv"), row.names = FALSE, quote = FALSE)
run("sim_paired", cts, cd, ~donor + treatment, c("treatment", "T", "C"))

## ---- GSE60450 subsets: samples by name, prefilter rowSums >= 10, then every 8th gene
if (dir.exists(gse_dir)) {
  cts <- read.delim(file.path(gse_dir, "counts_matrix.tsv"), check.names = FALSE)
  rownames(cts) <- as.character(cts$EntrezGeneID); cts$EntrezGeneID <- NULL
  cts <- as.matrix(cts); storage.mode(cts) <- "integer"
  smp <- read.delim(file.path(gse_dir, "samples.tsv"), stringsAsFactors = FALSE)
  rownames(smp) <- smp$sample
  colnames(cts) <- smp$name; rownames(smp) <- smp$name
  gse_sets <- list(
    list("gse_2v2", c("MCL1-DG", "MCL1-DH", "MCL1-LA", "MCL1-LB"), ~celltype),
    list("gse_3v2", c("MCL1-DG", "MCL1-DH", "MCL1-DI", "MCL1-LA", "MCL1-LB"), ~celltype),
    list("gse_df1", c("MCL1-DG", "MCL1-DI", "MCL1-DK", "MCL1-LA", "MCL1-LE"), ~celltype + status),
    list("gse_df3", c("MCL1-DG", "MCL1-DH", "MCL1-DI", "MCL1-DK", "MCL1-LA", "MCL1-LC", "MCL1-LE"),
         ~celltype + status))
  for (s in gse_sets) {
    cd <- smp[s[[2]], c("celltype", "status")]
    cd$celltype <- factor(cd$celltype, levels = c("basal", "luminal"))
    cd$status <- factor(cd$status, levels = c("virgin", "pregnant", "lactate"))
    sub <- cts[, s[[2]]]
    sub <- sub[rowSums(sub) >= 10, ]
    sub <- sub[seq(1, nrow(sub), by = 8), ]
    run(s[[1]], sub, cd, s[[3]], c("celltype", "luminal", "basal"))
  }
}
write.csv(do.call(rbind, summary_rows), file.path(here, "small_df_summary.csv"), row.names = FALSE, quote = FALSE)
