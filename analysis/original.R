#!/usr/bin/env Rscript
# The original experiment's analysis, replicated for `tls-bench.csv`, the file every sweep
# run also writes in the experiment's layout: no header, the columns
# config,size,requests,mean,stdev,p50,p90,p99, latencies in microseconds. As the original
# script did, it reads the file with readr, divides the five latency columns by 1000 (ms)
# and draws p50 against the body size as a factor, one jittered point per line, filled by
# config.
#
#   Rscript analysis/original.R results/<run>/tls-bench.csv [OUT.png]
#
# OUT defaults to original.png next to the CSV. Needs ggplot2 and readr.

suppressPackageStartupMessages({
  library(readr)
  library(ggplot2)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1 || !file.exists(args[1])) {
  message("usage: Rscript analysis/original.R tls-bench.csv [OUT.png] (no such file)")
  quit(status = 2)
}
out <- if (length(args) >= 2) args[2] else file.path(dirname(args[1]), "original.png")

columns <- c("config", "size", "requests", "mean", "stdev", "p50", "p90", "p99")
latencies <- c("mean", "stdev", "p50", "p90", "p99")
data <- read_csv(args[1], columns, show_col_types = FALSE)
data[latencies] <- data[latencies] / 1000

plot <- ggplot(data, aes(x = factor(size), y = p50, fill = config)) +
  geom_jitter(size = 4, width = 0.15, shape = 21) +
  labs(x = "request body size (bytes)", y = "p50 response time (ms)",
       title = "The original experiment's figure, from tls-bench.csv")
ggsave(out, plot, width = 8, height = 5, dpi = 100)
cat(out, "\n")
