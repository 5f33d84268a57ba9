#!/usr/bin/env Rscript
# The main picture of each CSV of a harness run, for R users (plot.py makes the full set,
# PNG and SVG, and the summaries).
#
#   Rscript analysis/plot.R results/<run>/results.csv [--out DIR]
#   Rscript analysis/plot.R results/<run>/handshakes.csv [--out DIR]
#   Rscript analysis/plot.R results/<run>/idle.csv [--out DIR]
#
# The CSV's file name picks the picture, as in plot.py (`kinds` below; an unknown name is
# read as a results.csv); each is written next to the CSV (or into DIR):
#
# - results.csv -> latency_r.png: p50, p90 and p99 (one panel each) against request body
#   size on a log axis, one colour per series, every iteration a jittered point, the median
#   of the iterations a line; and tls_tax_r.png: the TLS tax, each series' server CPU-µs per
#   request minus its no-TLS floor's median at the same size (the relay's for a terminator
#   in front of the echo-server, plain HTTP's for the echo-server doing TLS itself; as
#   plot.py and the harness's summary compute it), where the CSV has the CPU column and a
#   floor; and seed_r.png: the original experiment's figure reproduced, as plot.py's
#   seed.png (p50 in ms against body size as a factor, a jittered point per iteration,
#   filled by config); and spectrum_r.png: the percentile spectrum (latency against
#   1/(1-percentile) on a log axis labelled 50%, 90%, 99%, 99.9%..., one panel per body
#   size, a line per series from its median iteration by p99), from the rows' full
#   distributions (latency/*.hgrm, named by the latency_file column), as plot.py's
#   spectrum.png; skipped with a line on stderr for a run without them;
# - handshakes.csv -> handshakes_r.png: handshakes/s and server CPU-µs per handshake (one
#   panel each) per case (handshake, certificate, key-exchange group), a bar per series
#   for the median, every iteration a point;
# - idle.csv -> idle_r.png: KiB of RSS per idle connection per series, the TLS terminator
#   and the echo-server behind it in two panels, a bar for the median, every iteration a point.
#
# Latency panels are in µs, or in ms where the largest figure a panel shows passes 10,000
# µs (latency_unit, plot.py's rule); each panel's title names its unit.
#
# A series is the `config` and the TLS library its terminator ran (`tls_library`), e.g.
# `haproxy (AWS-LC 5.12.0)`; where the library is not known (`unknown`, or a CSV written
# before the column existed) a config measured with several backends is split by
# `tls_backend` instead, as plot.py does. Rows with status `error` are left out; `warning` rows are crosses.
#
# Reads the CSV (and, for the spectrum, the .hgrm files it names); extra columns are ignored. Exits 2 with one line on stderr for a
# missing or empty file, a required column missing, or a figure that is not a number.
# Needs ggplot2 and readr (Debian: apt-get install r-base-core r-cran-ggplot2 r-cran-readr).

percentiles <- c("p50", "p90", "p99")
case_columns <- c("handshake", "cert_type", "tls_kx_group")

fail <- function(...) {
  cat("plot.R: ", ..., "\n", sep = "", file = stderr())
  quit(save = "no", status = 2)
}

# Installed is enough here: ggplot2 is loaded only once the CSV has passed its checks, so
# that bad input is reported without waiting for it.
for (pkg in c("ggplot2", "readr")) {
  if (!nzchar(system.file(package = pkg))) {
    fail(pkg, " is not installed: apt-get install r-cran-ggplot2 r-cran-readr ",
         "(or install.packages(\"", pkg, "\"))")
  }
}

usage <- paste("usage: Rscript analysis/plot.R results/<run>/results.csv",
               "(or handshakes.csv, idle.csv) [--out DIR]")
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


# ---------------------------------------------------------------- reading the CSV

# The CSV's rows with `kind`'s columns, numbers parsed; fails (exit 2) if unusable.
read_checked <- function(csv, kind) {
  if (!file.exists(csv) || dir.exists(csv)) fail(csv, ": no such file")
  if (file.size(csv) == 0) fail(csv, ": the file is empty (expected a header and rows)")
  # Everything as text first, so that a bad figure is reported, not guessed at.
  data <- tryCatch(
    readr::read_csv(csv, col_types = readr::cols(.default = readr::col_character()),
                    na = character(), progress = FALSE, show_col_types = FALSE),
    error = function(e) fail(csv, ": not a readable CSV: ", conditionMessage(e))
  )
  missing <- setdiff(kind$required, names(data))
  if (length(missing) > 0) {
    fail(csv, ": missing required column(s): ", paste(missing, collapse = ", "),
         " (a harness ", kind$file, " has them all)")
  }
  if (nrow(data) == 0) fail(csv, ": has a header but no rows")
  data <- as.data.frame(data)
  if (!"tls_backend" %in% names(data)) data$tls_backend <- ""
  if (!"tls_library" %in% names(data)) data$tls_library <- ""

  for (column in c(kind$numeric, intersect(kind$optional_numeric, names(data)))) {
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

  # Series: "config (tls_library)" where the library is known; else "config (tls_backend)"
  # where a config has several backends, else the config (plot.py's series_names).
  backends <- tapply(data$tls_backend, data$config, function(b) length(unique(b)))
  split <- names(backends)[backends > 1]
  library <- trimws(data$tls_library)
  named <- !library %in% c("", "none", "unknown")
  data$series <- ifelse(named, paste0(data$config, " (", library, ")"),
                        ifelse(data$config %in% split,
                               paste0(data$config, " (", data$tls_backend, ")"), data$config))
  # First appearance: the plan's order, as plot.py does.
  data$series <- factor(data$series, levels = unique(data$series))
  data
}

# The rows to draw: all but status error; fails (exit 2) when none is left.
measured <- function(data, csv) {
  plotted <- data[data$status != "error", ]
  if (nrow(plotted) == 0) {
    fail(csv, ": no measurement to plot: all ", nrow(data), " row(s) have status error")
  }
  plotted$series <- droplevels(plotted$series)
  plotted
}

# ---------------------------------------------------------------- results.csv

render_results <- function(data, csv) {
  plotted <- measured(data, csv)
  pictures <- list(latency_r.png = latency_picture(plotted, csv))
  tax <- tls_tax_picture(plotted, csv)
  if (!is.null(tax)) pictures$tls_tax_r.png <- tax
  pictures$seed_r.png <- seed_picture(plotted, csv)
  spectrum <- spectrum_picture(plotted, csv)
  if (!is.null(spectrum)) pictures$spectrum_r.png <- spectrum
  pictures
}

human_bytes <- function(x) {
  ifelse(x >= 1e6, paste(x / 1e6, "MB"),
         ifelse(x >= 1e3, paste(x / 1e3, "kB"), paste(x, "B")))
}

latency_picture <- function(plotted, csv) {
  # Long form: one row per measurement and percentile (base R, no tidyr needed).
  long <- do.call(rbind, lapply(percentiles, function(p) {
    data.frame(series = plotted$series, size = plotted$size, status = plotted$status,
               percentile = p, latency = plotted[[p]])
  }))
  long <- long[!is.na(long$size) & !is.na(long$latency) & long$latency > 0, ]
  # Each panel in the unit latency_unit picks for the figures it shows, named in its title.
  titles <- character()
  units <- character()
  for (p in percentiles) {
    unit <- latency_unit(long$latency[long$percentile == p])
    long$latency[long$percentile == p] <- long$latency[long$percentile == p] / unit$divisor
    titles[[p]] <- paste0(p, " latency (", unit$label, ")")
    units[[p]] <- unit$label
  }
  ylabel <- if (length(unique(units)) == 1) {
    paste0("latency (", units[[1]], ")")
  } else {
    "latency (unit in each panel's title)"
  }
  long$percentile <- factor(long$percentile, levels = percentiles)
  long$warning <- long$status != "ok"
  medians <- aggregate(latency ~ series + size + percentile, data = long, FUN = median)

  sizes <- sort(unique(long$size))
  picture <- ggplot(long, aes(x = size, y = latency, colour = series)) +
    # Seeded jitter (in log10 units of size): the same CSV gives the same picture.
    geom_point(aes(shape = warning), alpha = 0.6, size = 1.6,
               position = position_jitter(width = 0.025, height = 0, seed = 1)) +
    geom_line(data = medians, linewidth = 0.8) +
    facet_wrap(~percentile, nrow = 1, scales = "free_y",
               labeller = as_labeller(titles)) +
    scale_x_log10(breaks = sizes, labels = human_bytes(sizes)) +
    scale_y_log10(labels = plain_numbers) +
    status_shapes() +
    labs(title = "Latency by request body size",
         subtitle = paste0(run_name(csv), ": points are iterations, lines medians"),
         x = "request body size", y = ylabel, colour = NULL) +
    theme_bw(base_size = 11) +
    theme(legend.position = "bottom", legend.box = "vertical",
          panel.grid.minor = element_blank())
  list(picture = picture, width = 14, height = 5.6)
}

# The original experiment's figure, as its R script drew it (original.R does the same from
# tls-bench.csv): p50 in ms against body size as a factor, a jittered point per iteration,
# filled by config; always ms, as the original was. Rows with status warning get a red edge
# (the original knew no status). The jitter is seeded where the pictures are drawn.
seed_picture <- function(plotted, csv) {
  rows <- plotted[!is.na(plotted$size) & !is.na(plotted$p50), ]
  rows$config <- factor(rows$config, levels = unique(rows$config))
  rows$p50_ms <- rows$p50 / 1000
  rows$warning <- rows$status == "warning"
  picture <- ggplot(rows, aes(x = factor(size), y = p50_ms, fill = config)) +
    # Sideways only: a latency is never moved (geom_jitter's default height would).
    geom_jitter(aes(colour = warning), size = 4, width = 0.15, height = 0, shape = 21) +
    scale_colour_manual(values = c(`FALSE` = "black", `TRUE` = "red"),
                        labels = c(`FALSE` = "ok", `TRUE` = "warning"), name = "status") +
    scale_y_continuous(labels = plain_numbers) +
    labs(title = seed_title,
         subtitle = paste0(run_name(csv),
                           ": a point per iteration (rows with status error left out)"),
         x = "request body size (bytes)", y = "p50 response time (ms)") +
    theme_bw(base_size = 11)
  list(picture = picture, width = 8, height = 5.4)
}

seed_title <- "Reproduction of the original experiment: p50 response time by body size"

# One .hgrm file (HdrHistogram's percentile distribution, values in ms): its rows below
# the `Value Percentile ...` header, without the last (percentile 1 has no 1/(1-p)). Fails
# (exit 2) naming the file if it is not one.
read_hgrm <- function(path) {
  lines <- tryCatch(readLines(path, warn = FALSE),
                    error = function(e) fail(path, ": cannot read: ", conditionMessage(e)))
  header <- which(grepl("^\\s*Value\\s+Percentile", lines))
  if (length(header) == 0) {
    fail(path, ": no `Value Percentile TotalCount` header: not an HdrHistogram ",
         "percentile distribution")
  }
  body <- lines[-seq_len(header[1])]
  body <- trimws(body[!grepl("^#", body) & nzchar(trimws(body))])
  fields <- strsplit(body, "\\s+")
  value <- suppressWarnings(as.numeric(vapply(fields, `[`, "", 1)))
  percentile <- suppressWarnings(as.numeric(vapply(fields, `[`, "", 2)))
  bad <- which(is.na(value) | is.na(percentile) | lengths(fields) < 3)
  if (length(bad) > 0) fail(path, ": '", body[bad[1]], "' is not a percentile row")
  if (length(value) == 0) fail(path, ": no percentile rows (an empty histogram)")
  keep <- percentile < 1
  data.frame(latency_us = value[keep] * 1000, inverse = 1 / (1 - percentile[keep]))
}

# Of each series and size, the row of the median iteration by p99 (the lower middle one
# for an even count), as plot.py's hgrm.representative.
representative <- function(rows) {
  groups <- split(rows, list(rows$series, rows$size), drop = TRUE)
  picked <- lapply(groups, function(g) {
    g <- g[order(g$p99, g$iteration), ]
    g[(nrow(g) - 1) %/% 2 + 1, ]
  })
  do.call(rbind, picked)
}

spectrum_ticks <- c(`50%` = 2, `90%` = 10, `99%` = 100, `99.9%` = 1e3,
                    `99.99%` = 1e4, `99.999%` = 1e5, `99.9999%` = 1e6)

# NULL (said on stderr) when the run kept no distributions: no latency/ folder beside the
# CSV, or no latency_file column (a run from before the harness kept them).
spectrum_picture <- function(plotted, csv) {
  folder <- file.path(dirname(csv), "latency")
  files <- if ("latency_file" %in% names(plotted)) trimws(plotted$latency_file) else ""
  rows <- plotted[nzchar(files) & !is.na(plotted$p99), ]
  if (!dir.exists(folder) || nrow(rows) == 0) {
    cat("plot.R: no latency distributions with ", csv, " (no latency/ folder, or no ",
        "latency_file column: a run from before the harness kept them): spectrum_r.png ",
        "skipped\n", sep = "", file = stderr())
    return(NULL)
  }
  chosen <- representative(rows)
  lines <- do.call(rbind, lapply(seq_len(nrow(chosen)), function(i) {
    r <- chosen[i, ]
    d <- read_hgrm(file.path(dirname(csv), trimws(r$latency_file)))
    data.frame(series = r$series, size = r$size, inverse = d$inverse,
               latency_us = d$latency_us)
  }))
  # Each panel in the unit latency_unit picks for its figures, named in its title.
  sizes <- sort(unique(lines$size))
  titles <- character()
  lines$latency <- NA_real_
  for (size in sizes) {
    here <- lines$size == size
    unit <- latency_unit(lines$latency_us[here])
    lines$latency[here] <- lines$latency_us[here] / unit$divisor
    titles[[as.character(size)]] <- paste0(human_bytes(size), " request body (",
                                           unit$label, ")")
  }
  lines$series <- factor(lines$series, levels = levels(plotted$series))
  ticks <- spectrum_ticks[spectrum_ticks <= max(lines$inverse) * 1.5]
  picture <- ggplot(lines, aes(x = inverse, y = latency, colour = series)) +
    geom_line(linewidth = 0.8) +
    facet_wrap(~size, nrow = 1, scales = "free_y", labeller = as_labeller(titles)) +
    scale_x_log10(breaks = ticks, labels = names(ticks)) +
    scale_y_continuous(labels = plain_numbers, limits = c(0, NA)) +
    labs(title = "Latency by percentile (HdrHistogram's percentile spectrum)",
         subtitle = paste0(run_name(csv), ": each series' median iteration by p99"),
         x = "percentile", y = "latency (unit in each panel's title)", colour = NULL) +
    theme_bw(base_size = 11) +
    theme(legend.position = "bottom", panel.grid.minor = element_blank())
  list(picture = picture, width = max(4.6 * length(sizes), 8), height = 5.6)
}

# The config that moves the same bytes without TLS (plot.py's no_tls_floor).
no_tls_floor <- function(config) {
  ifelse(config %in% c("http", "relay"), NA,
         ifelse(startsWith(config, "https-"), "http", "relay"))
}

# NULL when the CSV has no server CPU column or no floor rows to subtract.
tls_tax_picture <- function(plotted, csv) {
  if (!"server_cpu_us_per_req" %in% names(plotted)) return(NULL)
  cpu <- plotted[!is.na(plotted$server_cpu_us_per_req), ]
  floors <- aggregate(server_cpu_us_per_req ~ config + size, data = cpu, FUN = median)
  base <- floors$server_cpu_us_per_req[match(paste(no_tls_floor(cpu$config), cpu$size),
                                             paste(floors$config, floors$size))]
  tax <- data.frame(series = cpu$series, size = cpu$size, warning = cpu$status != "ok",
                    tax = cpu$server_cpu_us_per_req - base)
  tax <- tax[!is.na(tax$tax), ]
  if (nrow(tax) == 0) return(NULL)
  tax$series <- droplevels(tax$series)
  medians <- aggregate(tax ~ series + size, data = tax, FUN = median)
  sizes <- sort(unique(tax$size))
  picture <- ggplot(tax, aes(x = size, y = tax, colour = series)) +
    geom_point(aes(shape = warning), alpha = 0.6, size = 1.6,
               position = position_jitter(width = 0.025, height = 0, seed = 1)) +
    geom_line(data = medians, linewidth = 0.8) +
    scale_x_log10(breaks = sizes, labels = human_bytes(sizes)) +
    scale_y_continuous(labels = plain_numbers, limits = c(min(0, tax$tax), NA)) +
    status_shapes() +
    labs(title = "TLS tax: server CPU per request above the no-TLS floor",
         subtitle = paste0(run_name(csv), ": points are iterations, lines medians"),
         x = "request body size", y = "CPU-µs per request", colour = NULL) +
    theme_bw(base_size = 11) +
    theme(legend.position = "bottom", legend.box = "vertical",
          panel.grid.minor = element_blank())
  list(picture = picture, width = 9, height = 6)
}

# ---------------------------------------------------------------- handshakes.csv

handshake_panels <- c(
  rps = "handshakes per second (handshakes/s)",
  server_cpu_us_per_req = "server CPU per handshake, terminator + echo-server (CPU-µs)"
)

render_handshakes <- function(data, csv) {
  plotted <- measured(data, csv)
  # The case: handshake, certificate and group; an empty one (no group negotiated) left out.
  plotted$case <- apply(plotted[case_columns], 1, function(v) paste(v[v != ""], collapse = " "))
  cases <- unique(plotted$case)
  long <- do.call(rbind, lapply(names(handshake_panels), function(column) {
    data.frame(series = plotted$series, case = plotted$case, status = plotted$status,
               panel = handshake_panels[[column]], value = plotted[[column]])
  }))
  long <- long[!is.na(long$value), ]
  long$case <- factor(long$case, levels = cases)
  long$panel <- factor(long$panel, levels = handshake_panels)
  long$warning <- long$status != "ok"
  medians <- aggregate(value ~ series + case + panel, data = long, FUN = median)
  dodge <- position_dodge(width = 0.9)
  picture <- ggplot(long, aes(x = case, y = value, fill = series, colour = series)) +
    geom_col(data = medians, position = dodge, width = 0.85, alpha = 0.35, linewidth = 0.3) +
    geom_point(aes(shape = warning), position = dodge, size = 1.3) +
    facet_wrap(~panel, ncol = 1, scales = "free_y") +
    scale_x_discrete(labels = function(x) gsub(" ", "\n", x)) +
    scale_y_continuous(labels = plain_numbers, limits = c(0, NA)) +
    status_shapes() +
    labs(title = "TLS handshakes: a new connection per request",
         subtitle = paste0(run_name(csv), ": bars are medians, points iterations"),
         x = "handshake, certificate, key-exchange group", y = NULL,
         fill = NULL, colour = NULL) +
    theme_bw(base_size = 11) +
    theme(legend.position = "bottom", legend.box = "vertical",
          panel.grid.minor = element_blank(), panel.grid.major.x = element_blank())
  list(handshakes_r.png = list(
    picture = picture, height = 9.4,
    width = min(max(2 + 0.3 * length(cases) * nlevels(long$series), 8), 22)))
}

# ---------------------------------------------------------------- idle.csv

idle_parts <- c(
  terminator_kib_per_conn = "TLS terminator (proxy, peer, or the echo-server for https-*)",
  backend_kib_per_conn = "echo-server behind the terminator"
)

render_idle <- function(data, csv) {
  plotted <- measured(data, csv)
  long <- do.call(rbind, lapply(names(idle_parts), function(column) {
    data.frame(series = plotted$series, status = plotted$status,
               part = idle_parts[[column]], value = plotted[[column]])
  }))
  long$part <- factor(long$part, levels = idle_parts)
  long$warning <- long$status != "ok"
  present <- long[!is.na(long$value), ]
  medians <- aggregate(value ~ series + part, data = present, FUN = median)
  # Each label just right of its bar or its furthest point, whichever is longer.
  furthest <- aggregate(value ~ series + part, data = present, FUN = max)
  medians$label_x <- pmax(medians$value, furthest$value[match(
    paste(medians$series, medians$part), paste(furthest$series, furthest$part))])
  nudge <- 0.01 * max(present$value)
  # Series without a figure for a process (https-*: no backend) say so in its place.
  every <- expand.grid(series = levels(plotted$series), part = levels(long$part))
  absent <- every[!paste(every$series, every$part) %in% paste(medians$series, medians$part), ]
  absent$series <- factor(absent$series, levels = levels(plotted$series))
  absent$part <- factor(absent$part, levels = idle_parts)
  held <- unique(plotted$connections[!is.na(plotted$connections)])
  count <- if (length(held) == 1) {
    paste(format(held, big.mark = ",", scientific = FALSE), "idle connections")
  } else {
    "idle connections"
  }
  picture <- ggplot(present, aes(x = value, y = series, fill = series, colour = series)) +
    geom_col(data = medians, width = 0.6, alpha = 0.35, linewidth = 0.3, orientation = "y") +
    geom_point(aes(shape = warning), size = 1.6,
               position = position_jitter(width = 0, height = 0.15, seed = 1)) +
    geom_text(data = medians, aes(x = label_x + nudge, label = sprintf("%.1f", value)),
              colour = "black", hjust = 0, size = 3) +
    geom_text(data = absent, aes(x = nudge, y = series,
                                 label = "none: the echo-server is the terminator"),
              inherit.aes = FALSE, hjust = 0, colour = "grey40", size = 3) +
    facet_wrap(~part, nrow = 1, drop = FALSE) +
    scale_y_discrete(limits = rev(levels(plotted$series))) +
    scale_x_continuous(labels = plain_numbers, expand = expansion(mult = c(0, 0.12))) +
    status_shapes() +
    guides(fill = "none", colour = "none") +
    labs(title = "Memory per idle TLS connection (RSS growth / connections opened)",
         subtitle = paste0(run_name(csv), ": ", count,
                           " held; bars are medians, points iterations"),
         x = "KiB of RSS per idle connection", y = NULL) +
    theme_bw(base_size = 11) +
    theme(legend.position = "bottom", panel.grid.minor = element_blank(),
          panel.grid.major.y = element_blank())
  list(idle_r.png = list(picture = picture, width = 13,
                         height = 1.9 + 0.42 * nlevels(plotted$series)))
}

# ---------------------------------------------------------------- shared pieces

# plot.py's latency_unit, the one rule for every latency axis: ms where the largest of the
# figures shown (in µs) passes ms_above_us, µs otherwise (and for no figures at all).
ms_above_us <- 10000
latency_unit <- function(values) {
  if (any(!is.na(values)) && max(values, na.rm = TRUE) > ms_above_us) {
    list(label = "ms", divisor = 1000)
  } else {
    list(label = "µs", divisor = 1)
  }
}

# 1,500 or 0.5, never 1.5e+03.
plain_numbers <- function(y) format(y, big.mark = ",", scientific = FALSE, trim = TRUE)

# Points: a dot for status ok, a cross for warning.
status_shapes <- function() {
  scale_shape_manual(values = c(`FALSE` = 16, `TRUE` = 4),
                     labels = c(`FALSE` = "ok", `TRUE` = "warning"), name = "status")
}

run_name <- function(csv) basename(dirname(normalizePath(csv)))

# ---------------------------------------------------------------- the kinds

# What each CSV the harness writes needs and makes, by file name (as plot.py's KINDS).
kinds <- list(
  results.csv = list(
    file = "results.csv",
    required = c("config", "size", "iteration", "p50", "p90", "p99", "status"),
    numeric = c("size", "iteration", "p50", "p90", "p99"),
    optional_numeric = "server_cpu_us_per_req",
    render = render_results
  ),
  handshakes.csv = list(
    file = "handshakes.csv",
    required = c("config", "tls_backend", "iteration", case_columns, "rps",
                 "server_cpu_us_per_req", "status"),
    numeric = c("iteration", "rps", "server_cpu_us_per_req"),
    render = render_handshakes
  ),
  idle.csv = list(
    file = "idle.csv",
    required = c("config", "tls_backend", "iteration", "connections",
                 "terminator_kib_per_conn", "backend_kib_per_conn", "status"),
    numeric = c("iteration", "connections", "terminator_kib_per_conn", "backend_kib_per_conn"),
    render = render_idle
  )
)

kind <- kinds[[basename(csv)]]
if (is.null(kind)) kind <- kinds$results.csv
data <- read_checked(csv, kind)
suppressPackageStartupMessages(library(ggplot2))
drawn <- kind$render(data, csv)

if (!dir.exists(out_dir) && !dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)) {
  cat("plot.R: cannot create the output folder ", out_dir, "\n", sep = "", file = stderr())
  quit(save = "no", status = 1)
}
options(bitmapType = "cairo")  # no X display needed
for (name in names(drawn)) {
  out <- file.path(out_dir, name)
  # geom_jitter draws its offsets here: seeded, the same CSV gives the same picture.
  set.seed(1)
  ggsave(out, drawn[[name]]$picture, width = drawn[[name]]$width,
         height = drawn[[name]]$height, dpi = 110)
  cat(out, "\n", sep = "")
}
