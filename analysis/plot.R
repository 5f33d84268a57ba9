#!/usr/bin/env Rscript
# The latency picture of one harness run, for R users (plot.py makes the full set).
#
#   Rscript analysis/plot.R results/<run>/results.csv [--out DIR]
#
# writes latency_r.png next to the CSV (or into DIR): p50, p90 and p99 (one panel each)
# against request body size on a log axis, one colour per series, every iteration a
# jittered point (a cross for status `warning`), the median of the iterations a line.
# A series is the `config`, split by `tls_backend` where one config was measured with
# several backends. Rows with status `error` are left out.
#
# Reads only the CSV; extra columns are ignored. Exits 2 with one line on stderr for a
# missing or empty file, a required column missing, or a figure that is not a number.
# Needs ggplot2 and readr (Debian: apt-get install r-base-core r-cran-ggplot2 r-cran-readr).

required <- c("config", "size", "iteration", "p50", "p90", "p99", "status")
numeric_columns <- c("size", "iteration", "p50", "p90", "p99")
percentiles <- c("p50", "p90", "p99")

fail <- function(...) {
  cat("plot.R: ", ..., "\n", sep = "", file = stderr())
  quit(save = "no", status = 2)
}

for (pkg in c("ggplot2", "readr")) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    fail(pkg, " is not installed: apt-get install r-cran-ggplot2 r-cran-readr ",
         "(or install.packages(\"", pkg, "\"))")
  }
}
suppressPackageStartupMessages(library(ggplot2))

usage <- "usage: Rscript analysis/plot.R results/<run>/results.csv [--out DIR]"
args <- commandArgs(trailingOnly = TRUE)
out_dir <- NULL
positional <- character()
i <- 1
while (i <= length(args)) {
  if (args[i] == "--out") {
    if (i == length(args)) fail("--out needs a folder; ", usage)
    out_dir <- args[i + 1]
    i <- i + 2
  } else if (startsWith(args[i], "--")) {
    fail("unknown option ", args[i], "; ", usage)
  } else {
    positional <- c(positional, args[i])
    i <- i + 1
  }
}
if (length(positional) != 1) fail(usage)
csv <- positional[1]
if (is.null(out_dir)) out_dir <- dirname(csv)

if (!file.exists(csv) || dir.exists(csv)) fail(csv, ": no such file")
if (file.size(csv) == 0) fail(csv, ": the file is empty (expected a header and rows)")

# Everything as text first, so that a bad figure is reported, not guessed at.
data <- tryCatch(
  readr::read_csv(csv, col_types = readr::cols(.default = readr::col_character()),
                  na = character(), progress = FALSE, show_col_types = FALSE),
  error = function(e) fail(csv, ": not a readable CSV: ", conditionMessage(e))
)
missing <- setdiff(required, names(data))
if (length(missing) > 0) {
  fail(csv, ": missing required column(s): ", paste(missing, collapse = ", "),
       " (a harness results.csv has them all)")
}
if (nrow(data) == 0) fail(csv, ": has a header but no rows")
data <- as.data.frame(data)
if (!"tls_backend" %in% names(data)) data$tls_backend <- ""

for (column in numeric_columns) {
  raw <- trimws(data[[column]])
  value <- suppressWarnings(as.numeric(raw))
  bad <- which(is.na(value) & raw != "")
  if (length(bad) > 0) {
    fail(csv, ": data row ", bad[1], ": column ", column, " = '", raw[bad[1]],
         "' is not a number")
  }
  data[[column]] <- value
}
data$status <- tolower(trimws(data$status))

# Series: config, or "config (tls_backend)" where a config has several backends.
backends <- tapply(data$tls_backend, data$config, function(b) length(unique(b)))
split <- names(backends)[backends > 1]
data$series <- ifelse(data$config %in% split,
                      paste0(data$config, " (", data$tls_backend, ")"), data$config)
# First appearance: the plan's order, as plot.py does.
data$series <- factor(data$series, levels = unique(data$series))

plotted <- data[data$status != "error", ]
if (nrow(plotted) == 0) {
  fail(csv, ": no measurement to plot: all ", nrow(data), " row(s) have status error")
}

# Long form: one row per measurement and percentile (base R, no tidyr needed).
long <- do.call(rbind, lapply(percentiles, function(p) {
  data.frame(series = plotted$series, size = plotted$size, status = plotted$status,
             percentile = p, latency = plotted[[p]])
}))
long <- long[!is.na(long$size) & !is.na(long$latency) & long$latency > 0, ]
long$percentile <- factor(long$percentile, levels = percentiles)
long$warning <- long$status != "ok"
medians <- aggregate(latency ~ series + size + percentile, data = long, FUN = median)

human_bytes <- function(x) {
  ifelse(x >= 1e6, paste(x / 1e6, "MB"),
         ifelse(x >= 1e3, paste(x / 1e3, "kB"), paste(x, "B")))
}
sizes <- sort(unique(long$size))
run_name <- basename(dirname(normalizePath(csv)))

picture <- ggplot(long, aes(x = size, y = latency, colour = series)) +
  # Seeded jitter (in log10 units of size): the same CSV gives the same picture.
  geom_point(aes(shape = warning), alpha = 0.6, size = 1.6,
             position = position_jitter(width = 0.025, height = 0, seed = 1)) +
  geom_line(data = medians, linewidth = 0.8) +
  facet_wrap(~percentile, nrow = 1, scales = "free_y",
             labeller = as_labeller(function(p) paste(p, "latency"))) +
  scale_x_log10(breaks = sizes, labels = human_bytes(sizes)) +
  scale_y_log10(labels = function(y) format(y, big.mark = ",", scientific = FALSE, trim = TRUE)) +
  scale_shape_manual(values = c(`FALSE` = 16, `TRUE` = 4),
                     labels = c(`FALSE` = "ok", `TRUE` = "warning"), name = "status") +
  labs(title = "Latency by request body size",
       subtitle = paste0(run_name, ": points are iterations, lines medians"),
       x = "request body size", y = "latency (µs)", colour = NULL) +
  theme_bw(base_size = 11) +
  theme(legend.position = "bottom", legend.box = "vertical",
        panel.grid.minor = element_blank())

if (!dir.exists(out_dir) && !dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)) {
  cat("plot.R: cannot create the output folder ", out_dir, "\n", sep = "", file = stderr())
  quit(save = "no", status = 1)
}
out <- file.path(out_dir, "latency_r.png")
options(bitmapType = "cairo")  # no X display needed
ggsave(out, picture, width = 14, height = 5.6, dpi = 110)
cat(out, "\n", sep = "")
