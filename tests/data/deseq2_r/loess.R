## loess reference for gendex's port of R's 1-D loess (surface = "interpolate"): fixed smooth-plus-wiggle data,
## no random numbers. Run: Rscript tests/data/deseq2_r/loess.R  (writes loess_reference.csv beside this script)
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
x <- seq(0, 8, length = 200)
fine <- seq(0, 8, length = 1000)[seq(1, 1000, by = 5)]
y1 <- sin(x) + 0.3 * cos(17 * x)
y2 <- exp(-x) + 0.05 * sin(31 * x^1.3)
x3 <- (1:57)^1.5 / 40 - 3
y3 <- cos(x3) + 0.2 * sin(11 * x3)
fine3 <- seq(min(x3), max(x3), length = 300)[seq(1, 300, by = 3)]
out <- data.frame(
  set = rep(c("a", "b", "c"), c(200, 200, 100)), span = rep(c(0.2, 0.2, 0.5), c(200, 200, 100)),
  x = c(fine, fine, fine3),
  fit = c(predict(loess(y1 ~ x, span = 0.2), fine), predict(loess(y2 ~ x, span = 0.2), fine),
          predict(loess(y3 ~ x3, span = 0.5), fine3)))
out$fit <- sprintf("%.17g", out$fit)
write.csv(out, file.path(here, "loess_reference.csv"), row.names = FALSE, quote = FALSE)
