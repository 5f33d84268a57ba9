#!/usr/bin/env python3
"""Pictures of one harness run, from its CSV alone.

    python3 analysis/plot.py results/<run>/results.csv [--out DIR]
    python3 analysis/plot.py results/<run>/handshakes.csv [--out DIR]
    python3 analysis/plot.py results/<run>/idle.csv [--out DIR]

The CSV's file name picks what to draw (`KINDS`; an unknown name is read as a results.csv).
Each writes, next to the CSV (or into DIR):

results.csv (the body-size sweep over keep-alive connections)
- latency.png/.svg: p50, p90 and p99 (one panel each) against request body size, one
  colour per series, every iteration a jittered point, the median of the iterations a line;
- throughput.png/.svg: requests/s and request-body MB/s against body size;
- efficiency.png/.svg: server CPU-µs per request against body size (the fair figure even
  when a run did not saturate the servers), and the TLS tax: that CPU minus the no-TLS
  floor's at the same size (the relay's for a terminator in front of the echo-server, plain
  HTTP's for the echo-server doing TLS itself);
- seed.png/.svg: the original experiment's figure, reproduced: p50 in ms against body size
  as a factor, one jittered point per iteration, filled by config (as analysis/original.R
  draws it from tls-bench.csv);
- spectrum.png/.svg: the percentile spectrum, as wrk2 users plot it: latency against
  1/(1-percentile) on a log axis labelled 50%, 90%, 99%, 99.9%..., one panel per body size,
  one line per series, from each row's full distribution (`latency/*.hgrm`, named by the
  `latency_file` column; hgrm.py reads them). A series is drawn from its median iteration
  by p99 (the lower middle one for an even count): a real run, not an average of runs.
  Skipped, with a line on stderr, for a run without a `latency/` folder (older runs);
- summary.md: the median tables behind the plots, and every row whose status is not ok.

Latencies are shown in µs, or in ms where the largest figure a panel shows passes 10,000
µs (`latency_unit`, the one rule for every latency axis and its summary table, whose
heading names the unit).

handshakes.csv (a new connection per request, so `rps` is handshakes/s)
- handshakes.png/.svg: for each case (full or resumed handshake, certificate, key-exchange
  group) a group of bars, one per series: handshakes/s above, server CPU-µs per handshake
  below; a bar is the median of the iterations, a point each iteration;
- handshakes-summary.md: the median tables per series and case, and the rows not ok.

idle.csv (idle TLS connections held open)
- idle.png/.svg: KiB of RSS per idle connection per series, the TLS terminator and the
  echo-server behind it in two panels side by side;
- idle-summary.md: the median table, and the rows not ok.

A series is a config (the CSV's `config` column) and the TLS library its terminator ran
(`tls_library`), e.g. `haproxy (AWS-LC 5.12.0)` or `proxy-rustls (rustls 0.23.46 + ring
0.17.14)`. Where the library is not known (`unknown`, or a CSV written before the column
existed) a config measured with more than one backend is split by `tls_backend` instead
(e.g. `proxy-rustls (rustls-ring)`). Rows with
status `error` are left out of the plots and medians and listed in the summary; rows with
status `warning` are drawn with a cross, counted in the medians, and listed too.

Only the columns named in `KINDS` are needed; any others are ignored. Exit codes: 0 done,
2 for input that cannot be plotted (missing or empty file, a required column missing,
a figure that is not a number, no row to plot), 1 for anything else. Each failure is one
line on stderr.

Adding a CSV: write a `render_<name>(frame, csv, out_dir)` that returns the paths it wrote
and add a `Kind` for its file name to `KINDS`.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker
    import numpy as np
    import pandas as pd
except ImportError as missing:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        f"plot.py: {missing.name} is not installed: "
        "python3 -m pip install -r analysis/requirements.txt\n"
    )
    sys.exit(2)

import hgrm  # noqa: E402 (beside this file; it needs pandas, checked above)


class InputError(Exception):
    """The CSV cannot be plotted; the message says why. Exit code 2."""


@dataclass(frozen=True)
class Kind:
    """One CSV the harness writes, and what to make of it."""

    # The file name that picks this kind (and that error messages name).
    file: str
    # Columns the renderer reads; text columns are kept as strings, the rest parsed as numbers.
    required: tuple[str, ...]
    text: tuple[str, ...]
    # Columns used when present (filled with "" when absent, parsed like required ones).
    optional: tuple[str, ...]
    render: Callable[["pd.DataFrame", Path, Path], list[Path]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plot.py",
        description=(
            "Plot a harness run's CSV: results.csv (latency, throughput, CPU per request), "
            "handshakes.csv (handshakes/s, CPU per handshake) or idle.csv (memory per idle "
            "connection). The file name picks the pictures."
        ),
    )
    parser.add_argument(
        "csv", type=Path, help="results/<run>/results.csv, handshakes.csv or idle.csv"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the pictures and the summary (default: the CSV's folder)",
    )
    args = parser.parse_args(argv)
    out_dir = args.out if args.out is not None else args.csv.parent
    kind = KINDS.get(args.csv.name, KINDS["results.csv"])
    try:
        frame = load(args.csv, kind)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the output folder {out_dir}: {e.strerror}") from None
        written = kind.render(frame, args.csv, out_dir)
    except InputError as e:
        sys.stderr.write(f"plot.py: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"plot.py: {e}\n")
        return 1
    # One path per line on stdout: the harness prints these.
    for path in written:
        print(path)
    return 0


# ---------------------------------------------------------------- reading the CSV


def load(path: Path, kind: Kind) -> "pd.DataFrame":
    """The CSV's rows with the kind's columns, numbers parsed; InputError if unusable."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        # Everything as text first, so that a bad figure is reported, not guessed at.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty (expected a header and rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV: {e}") from None
    missing = [c for c in kind.required if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing required column(s): {', '.join(missing)} "
            f"(a harness {kind.file} has them all)"
        )
    if frame.empty:
        raise InputError(f"{path}: has a header but no rows")
    for column in kind.optional:
        if column not in frame.columns:
            frame[column] = ""
    for column in kind.required + kind.optional:
        if column in kind.text:
            frame[column] = frame[column].astype(str).str.strip()
            continue
        raw = frame[column].astype(str).str.strip()
        numbers = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        bad = numbers.isna() & (raw != "")
        if bad.any():
            first = int(bad.to_numpy().nonzero()[0][0])
            # Rows, not lines: a quoted note may span lines.
            raise InputError(
                f"{path}: data row {first + 1}: column {column} = {raw.iloc[first]!r} "
                "is not a number"
            )
        frame[column] = numbers.astype(float)
    return frame


# ---------------------------------------------------------------- results.csv


def render_results(frame: "pd.DataFrame", csv: Path, out_dir: Path) -> list[Path]:
    """latency, throughput and efficiency pictures plus summary.md for one results.csv."""
    frame = frame.copy()
    frame["series"] = series_names(frame)
    frame["status"] = frame["status"].str.lower()
    frame["tls_tax_us_per_req"] = tls_tax(frame)
    plotted = frame[frame["status"] != "error"]
    order = list(dict.fromkeys(frame["series"]))  # first appearance: the plan's order
    colours = palette(order)
    # Read first: a distribution that cannot be read fails before anything is written.
    spectra = spectrum_data(plotted, csv)
    written = []
    # Each panel's unit is decided once, from the figures it shows: the picture and the
    # summary's table then agree.
    figures = [
        (name, title, [panel.shown(plotted[panel.column]) for panel in panels])
        for name, title, panels in FIGURES
    ]
    summary = out_dir / "summary.md"
    summary.write_text(results_summary(frame, plotted, order, figures, csv), encoding="utf-8")
    if plotted.empty:
        raise InputError(
            f"{csv}: no measurement to plot: all {len(frame)} row(s) have status error "
            f"(listed in {summary})"
        )
    for name, title, panels in figures:
        fig = figure(plotted, order, colours, title, panels, csv)
        written += save(fig, out_dir / name)
    written += save(seed_figure(plotted, csv), out_dir / "seed")
    if spectra is not None:
        written += save(spectrum_figure(spectra, order, colours, csv), out_dir / "spectrum")
    written.append(summary)
    return written


def no_tls_floor(config: str) -> str | None:
    """The config that moves the same bytes without TLS (the harness's
    `ConfigName::no_tls_floor`): plain HTTP for the echo-server doing TLS itself, the relay
    for a terminator in front of it, none for the floors themselves."""
    if config in ("http", "relay"):
        return None
    return "http" if config.startswith("https-") else "relay"


def tls_tax(frame: "pd.DataFrame") -> "pd.Series":
    """Each row's server CPU-µs per request minus its floor's median at the same size (rows
    with status error left out of the floor), as the harness's summary computes it; NaN
    without TLS or without the floor's rows."""
    measured = frame[frame["status"] != "error"]
    floors = measured.groupby(["config", "size"])["server_cpu_us_per_req"].median()

    def tax(r) -> float:
        floor = no_tls_floor(r["config"])
        base = floors.get((floor, r["size"]), math.nan) if floor else math.nan
        return r["server_cpu_us_per_req"] - base

    return frame.apply(tax, axis=1).astype(float)


def series_names(frame: "pd.DataFrame") -> "pd.Series":
    """`config (tls_library)` where the library is known; else `config (tls_backend)` for a
    config measured with several backends, and `config` alone otherwise. A known library
    names the backend too (`rustls ... + ring ...`), so it is never shown twice."""
    backends = frame.groupby("config")["tls_backend"].nunique()
    split = set(backends[backends > 1].index)

    def name(r) -> str:
        if r["tls_library"] not in UNNAMED_LIBRARIES:
            return f"{r['config']} ({r['tls_library']})"
        if r["config"] in split:
            return f"{r['config']} ({r['tls_backend']})"
        return r["config"]

    return frame.apply(name, axis=1).astype(str)


# `tls_library` values a series name leaves out: no TLS (`none`), not readable (`unknown`),
# and the empty cell of a CSV written before the column existed.
UNNAMED_LIBRARIES = ("", "none", "unknown")


def palette(order: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(order)}


@dataclass(frozen=True)
class Panel:
    column: str
    title: str
    ylabel: str
    log_y: bool
    # How the summary prints a median.
    fmt: str
    # A latency in µs, shown in the unit `latency_unit` picks for the figures (`shown`).
    latency: bool = False
    # What the CSV's figures are divided by to be shown in `ylabel`'s unit.
    divisor: float = 1.0

    def shown(self, values: "pd.Series") -> "Panel":
        """This panel as it shows `values`: a latency in the unit `latency_unit` picks for
        them (its label, format and divisor), anything else as it is."""
        if not self.latency:
            return self
        unit = latency_unit(values)
        return replace(self, ylabel=unit.label, fmt=unit.fmt, divisor=unit.divisor)


@dataclass(frozen=True)
class Unit:
    """A unit latencies are shown in: its label, what a figure in µs is divided by, and
    how the summary prints one."""

    label: str
    divisor: float
    fmt: str


MICROSECONDS = Unit("µs", 1.0, "{:,.0f}")
MILLISECONDS = Unit("ms", 1000.0, "{:,.1f}")
# Above this many µs latencies are shown in ms: the seed preset's 3,000 connections give
# p99s of 100-2,000 ms, which read better than "2,000,000 µs".
MS_ABOVE_US = 10_000


def latency_unit(values: "pd.Series") -> Unit:
    """The one rule for every latency axis and summary column: ms where the largest of the
    figures shown (in µs) passes MS_ABOVE_US, µs otherwise (and for no figures at all)."""
    largest = values.max()
    return MILLISECONDS if largest > MS_ABOVE_US else MICROSECONDS


LATENCY = [
    Panel("p50", "p50 latency", "µs", True, "{:,.0f}", latency=True),
    Panel("p90", "p90 latency", "µs", True, "{:,.0f}", latency=True),
    Panel("p99", "p99 latency", "µs", True, "{:,.0f}", latency=True),
]
THROUGHPUT = [
    Panel("rps", "requests per second", "req/s", False, "{:,.0f}"),
    Panel("mb_per_s", "request body throughput", "MB/s (10⁶ bytes)", True, "{:,.2f}"),
]
EFFICIENCY = [
    Panel("server_cpu_us_per_req", "server CPU per request", "CPU-µs per request", True, "{:,.1f}"),
    Panel(
        "tls_tax_us_per_req",
        "TLS tax: CPU above the no-TLS floor",
        "CPU-µs per request",
        False,
        "{:,.1f}",
    ),
]
# (file stem, figure title, panels): one entry per picture of a results.csv.
FIGURES = [
    ("latency", "Latency by request body size", LATENCY),
    ("throughput", "Throughput by request body size", THROUGHPUT),
    ("efficiency", "Server CPU time per request (proxy + echo-server)", EFFICIENCY),
]


def figure(frame, order, colours, title, panels, csv):
    """One row of panels sharing the x axis (body size, log), one colour per series."""
    fig, axes = plt.subplots(
        1,
        len(panels),
        # Room below for a legend of up to 12 series.
        figsize=(max(5.0 * len(panels), 8.0), 5.6),
        squeeze=False,
        constrained_layout=True,
    )
    # Seeded: the same CSV gives the same picture.
    rng = np.random.default_rng(0)
    sizes = sorted(frame["size"].dropna().unique())
    for ax, panel in zip(axes[0], panels):
        drawn = False
        for name in order:
            rows = frame[(frame["series"] == name)].dropna(subset=["size", panel.column])
            if panel.log_y:
                rows = rows[rows[panel.column] > 0]
            if rows.empty:
                continue
            drawn = True
            colour = colours[name]
            # Jitter by up to ±6% of the size (log axis: the same width everywhere).
            x = rows["size"].to_numpy() * 10 ** rng.uniform(-0.025, 0.025, len(rows))
            warn = (rows["status"] != "ok").to_numpy()
            y = rows[panel.column].to_numpy() / panel.divisor
            ax.scatter(x[~warn], y[~warn], s=14, color=colour, alpha=0.55, linewidths=0)
            if warn.any():
                ax.scatter(x[warn], y[warn], s=30, color=colour, marker="x", linewidths=1.2)
            medians = rows.groupby("size")[panel.column].median() / panel.divisor
            ax.plot(medians.index, medians.to_numpy(), color=colour, linewidth=1.8, label=name)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [human_bytes(s) for s in sizes])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        if panel.log_y and drawn:
            ax.set_yscale("log")
            # 1-2-5 steps in plain numbers: easier to read off than 3×10³.
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_locator(ticker.NullLocator())
        else:
            # From zero, or below it where a figure is (a TLS tax within the noise).
            values = frame[panel.column].dropna() / panel.divisor
            ax.set_ylim(bottom=min(0.0, float(values.min())) if len(values) else 0.0)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        ax.set_title(panel.title)
        ax.set_xlabel("request body size")
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, which="major", alpha=0.3)
        if not drawn:
            say_empty(ax, panel.column)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if any(frame["status"] == "warning"):
        handles.append(
            plt.Line2D([], [], color="grey", marker="x", linestyle="none", label="status warning")
        )
        labels.append("status warning")
    if handles:
        bottom_legend(fig, handles, labels)
    fig.suptitle(f"{title}\n{csv.parent.name or csv.name}: points are iterations, lines medians")
    return fig


def spectrum_data(plotted: "pd.DataFrame", csv: Path) -> "pd.DataFrame | None":
    """Each series' distribution per size, from its median iteration by p99 (hgrm.py):
    one row per point, with `series`, `size`, `inverse` and `latency_us`. None, said on
    stderr, for a run without distributions (a CSV from before `latency_file`, or a folder
    without `latency/`)."""
    folder = csv.parent / "latency"
    rows = plotted[(plotted["latency_file"] != "") & plotted["p99"].notna()]
    if not folder.is_dir() or rows.empty:
        sys.stderr.write(
            f"plot.py: no latency distributions with {csv} (no latency/ folder, or no "
            "latency_file column: a run from before the harness kept them): spectrum.png "
            "skipped\n"
        )
        return None
    parts = []
    for _, r in hgrm.representative(rows).iterrows():
        try:
            dist = hgrm.read(csv.parent / r["latency_file"])
        except hgrm.HgrmError as e:
            raise InputError(str(e)) from None
        dist = dist.dropna(subset=["inverse"])
        parts.append(
            pd.DataFrame(
                {
                    "series": r["series"],
                    "size": r["size"],
                    "iteration": r["iteration"],
                    "inverse": dist["inverse"],
                    "latency_us": dist["value_ms"] * 1000.0,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def spectrum_figure(spectra, order, colours, csv):
    """Latency against 1/(1-percentile), log x labelled in percentiles, one panel per size
    (in the unit `latency_unit` picks for its figures), one line per series."""
    sizes = sorted(spectra["size"].unique())
    fig, axes = plt.subplots(
        1,
        len(sizes),
        figsize=(max(4.6 * len(sizes), 8.0), 5.6),
        squeeze=False,
        constrained_layout=True,
    )
    reach = spectra["inverse"].max()
    ticks = [(x, label) for x, label in SPECTRUM_TICKS if x <= reach * 1.5]
    for ax, size in zip(axes[0], sizes):
        panel = spectra[spectra["size"] == size]
        unit = latency_unit(panel["latency_us"])
        for name in order:
            line = panel[panel["series"] == name]
            if line.empty:
                continue
            y = line["latency_us"].to_numpy() / unit.divisor
            ax.plot(line["inverse"], y, color=colours[name], linewidth=1.6, label=name)
        ax.set_xscale("log")
        ax.set_xticks([x for x, _ in ticks], [label for _, label in ticks])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_ylim(bottom=0.0)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        ax.set_title(f"{human_bytes(size)} request body")
        ax.set_xlabel("percentile")
        ax.set_ylabel(f"latency ({unit.label})")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = [], []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    bottom_legend(fig, handles, labels)
    fig.suptitle(
        f"Latency by percentile (HdrHistogram's percentile spectrum)\n"
        f"{csv.parent.name or csv.name}: each series' median iteration by p99"
    )
    return fig


# The spectrum's x ticks: 1/(1-percentile) and the percentile it stands for (0%, at 1,
# would sit on top of 50%).
SPECTRUM_TICKS = [
    (2.0, "50%"),
    (10.0, "90%"),
    (100.0, "99%"),
    (1e3, "99.9%"),
    (1e4, "99.99%"),
    (1e5, "99.999%"),
    (1e6, "99.9999%"),
]


def bottom_legend(fig, handles, labels: list[str]) -> None:
    """The figure's one legend, below its panels, in as many columns as fit."""
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=legend_columns(fig, labels),
        fontsize="small",
        frameon=False,
    )


def legend_columns(fig, labels: list[str]) -> int:
    """As many legend columns (up to 4) as the figure's width holds: series names carry
    their TLS library and can be long. About 12 characters an inch at the small font."""
    longest = max(len(label) for label in labels) + 4
    fit = int(fig.get_figwidth() * 12 // longest)
    return max(1, min(len(labels), 4, fit))


def seed_figure(plotted, csv):
    """The original experiment's figure, as its R script drew it (analysis/original.R does
    the same from tls-bench.csv): p50 in ms against body size as a factor, one point per
    iteration jittered sideways, filled by config. Always ms, as the original was. Rows with
    status warning get a red edge (the original knew no status)."""
    rows = plotted.dropna(subset=["size", "p50"])
    configs = list(dict.fromkeys(rows["config"]))
    colours = palette(configs)
    sizes = sorted(rows["size"].unique())
    fig, ax = plt.subplots(figsize=(8.0, 5.4), constrained_layout=True)
    # Seeded: the same CSV gives the same picture. Sideways only, by up to 0.15 of a
    # category (geom_jitter's width); a latency is never moved.
    rng = np.random.default_rng(0)
    x = rows["size"].map(sizes.index).to_numpy() + rng.uniform(-0.15, 0.15, len(rows))
    warn = (rows["status"] == "warning").to_numpy()
    points = ax.scatter(
        x,
        rows["p50"].to_numpy() / MILLISECONDS.divisor,
        s=80,
        c=[colours[c] for c in rows["config"]],
        edgecolors=np.where(warn, "red", "black"),
        linewidths=np.where(warn, 1.6, 0.6),
    )
    # Named in the SVG, so that a test can count the points.
    points.set_gid("seed-points")
    ax.set_xticks(range(len(sizes)), [f"{s:g}" for s in sizes])
    ax.set_xlim(-0.6, len(sizes) - 0.4)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.set_xlabel("request body size (bytes)")
    ax.set_ylabel(f"p50 response time ({MILLISECONDS.label})")
    ax.grid(True, alpha=0.3)
    handles = [seed_marker(c, colours[c], "black", 0.6) for c in configs]
    if warn.any():
        handles.append(seed_marker("status warning", "white", "red", 1.6))
    fig.legend(handles=handles, title="config", loc="outside right center", fontsize="small")
    fig.suptitle(
        f"{SEED_TITLE}\n{csv.parent.name or csv.name}: a point per iteration "
        "(rows with status error left out)"
    )
    return fig


def seed_marker(label: str, fill, edge: str, edge_width: float):
    """A legend entry drawn as the seed picture's points are."""
    return plt.Line2D(
        [],
        [],
        marker="o",
        linestyle="none",
        markersize=9,
        markerfacecolor=fill,
        markeredgecolor=edge,
        markeredgewidth=edge_width,
        label=label,
    )


# The seed picture's title: it redraws the original experiment's figure.
SEED_TITLE = "Reproduction of the original experiment: p50 response time by body size"


def save(fig, stem: Path) -> list[Path]:
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=110)
    # No date in the SVG, so that the same CSV gives the same file.
    fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return [png, svg]


def results_summary(frame, plotted, order, figures, csv: Path) -> str:
    """The median tables of `figures` (their panels as shown), and the rows not ok."""
    lines = [
        f"# Summary of {csv}",
        "",
        f"{status_line(frame)} Figures are medians over the iterations of rows "
        "whose status is ok or warning (rows with status error are left out; see the end).",
        f"Latencies in µs, or in ms where one of a table's iterations passes {MS_ABOVE_US:,} "
        "µs (its heading says which, as its picture's axis does); sizes are request body "
        "bytes.",
    ]
    sizes = sorted(plotted["size"].dropna().unique())
    for _, _, panels in figures:
        for panel in panels:
            lines += ["", f"## {panel.title}: median, {panel.ylabel}", ""]
            lines += median_table(plotted, order, sizes, panel)
    lines += flagged_rows(frame, ["config", "tls_backend", "size", "iteration"])
    lines += notes_on_ok_rows(frame)
    return "\n".join(lines) + "\n"


def median_table(plotted, order, sizes, panel: Panel) -> list[str]:
    """Medians per series (rows) and body size (columns)."""
    return case_table(plotted, order, "size", sizes, [human_bytes(s) for s in sizes], panel)


def case_table(plotted, order, key: str, cases: list, labels: list[str], panel: Panel):
    """Medians of `panel.column` per series (rows) and value of `key` (columns)."""
    header = "| series | " + " | ".join(labels) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in cases) + " |"
    rows = [header, rule]
    medians = plotted.groupby(["series", key])[panel.column].median()
    for name in order:
        cells = []
        for case in cases:
            value = medians.get((name, case), math.nan) / panel.divisor
            cells.append(number(value, panel.fmt))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def status_line(frame) -> str:
    counts = frame["status"].value_counts()
    return (
        f"{len(frame)} rows: {counts.get('ok', 0)} ok, {counts.get('warning', 0)} warning, "
        f"{counts.get('error', 0)} error."
    )


def flagged_rows(frame, columns: list[str]) -> list[str]:
    """The summary's list of rows whose status is not ok: `columns`, status and note."""
    lines = ["", "## Rows whose status is not ok", ""]
    flagged = frame[frame["status"] != "ok"]
    if flagged.empty:
        return lines + ["None."]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in columns]
    lines.append("| " + " | ".join(columns) + " | status | note |")
    lines.append(
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " | --- | --- |"
    )
    for _, r in flagged.iterrows():
        cells = [
            number(r[c], "{:.0f}") if n else (cell(r[c]) if r[c] != "" else "–")
            for c, n in zip(columns, numeric)
        ]
        lines.append("| " + " | ".join(cells) + f" | {r['status']} | {cell(r['note'])} |")
    return lines


def notes_on_ok_rows(frame) -> list[str]:
    """The harness also notes things on ok rows (e.g. servers sharing a CPU with the load
    generator): each distinct note once."""
    noted = frame[(frame["status"] == "ok") & (frame["note"] != "")]
    if noted.empty:
        return []
    lines = ["", "## Notes on ok rows", ""]
    for note, n in noted["note"].value_counts().items():
        lines.append(f"- {n} row(s): {cell(note)}")
    return lines


# ---------------------------------------------------------------- handshakes.csv


# What a handshakes.csv row measures besides its series: the harness's case columns.
CASE_COLUMNS = ("handshake", "cert_type", "tls_kx_group")
HANDSHAKE_PANELS = [
    Panel("rps", "handshakes per second", "handshakes/s", False, "{:,.0f}"),
    Panel(
        "server_cpu_us_per_req",
        "server CPU per handshake (terminator + echo-server)",
        "CPU-µs per handshake",
        False,
        "{:,.0f}",
    ),
]
# In the summary only: the terminator process alone (our proxy or the peer); empty for
# https-*, where the echo-server terminates TLS and the server figure is all of it.
TERMINATOR_CPU = Panel(
    "proxy_cpu_us_per_req",
    "terminator's own CPU per handshake (proxy or peer process)",
    "CPU-µs per handshake",
    False,
    "{:,.0f}",
)


def render_handshakes(frame: "pd.DataFrame", csv: Path, out_dir: Path) -> list[Path]:
    """handshakes.png/.svg and handshakes-summary.md for one handshakes.csv."""
    frame = frame.copy()
    frame["series"] = series_names(frame)
    frame["status"] = frame["status"].str.lower()
    frame["case"] = case_names(frame)
    plotted = frame[frame["status"] != "error"]
    order = list(dict.fromkeys(frame["series"]))
    # First appearance: the plan's order (ECDSA full, resumed, RSA full, resumed, hybrid).
    cases = list(dict.fromkeys(plotted["case"]))
    summary = out_dir / "handshakes-summary.md"
    summary.write_text(handshakes_summary(frame, plotted, order, cases, csv), encoding="utf-8")
    if plotted.empty:
        raise InputError(
            f"{csv}: no measurement to plot: all {len(frame)} row(s) have status error "
            f"(listed in {summary})"
        )
    fig = handshakes_figure(plotted, order, cases, palette(order), csv)
    return save(fig, out_dir / "handshakes") + [summary]


def case_names(frame: "pd.DataFrame") -> "pd.Series":
    """`full ecdsa-p256 X25519`: the case columns joined, empty ones left out (a failed
    row has no negotiated group)."""
    return frame.apply(
        lambda r: " ".join(str(r[c]) for c in CASE_COLUMNS if r[c] != ""), axis=1
    ).astype(str)


def handshakes_figure(plotted, order, cases, colours, csv):
    """One panel per HANDSHAKE_PANELS entry, stacked, sharing the case axis: in each case
    a bar per series present there (the median) with its iterations as points."""
    present = {
        case: [s for s in order if ((plotted["case"] == case) & (plotted["series"] == s)).any()]
        for case in cases
    }
    slots = max(len(p) for p in present.values())
    # Every bar the same width, a case's group centred on its tick.
    bar = 0.84 / slots
    width = min(max(2.0 + 0.3 * len(cases) * slots, 8.0), 22.0)
    fig, axes = plt.subplots(
        len(HANDSHAKE_PANELS),
        1,
        sharex=True,
        figsize=(width, 3.8 * len(HANDSHAKE_PANELS) + 1.8),
        squeeze=False,
        constrained_layout=True,
    )
    rng = np.random.default_rng(0)
    for ax, panel in zip(axes[:, 0], HANDSHAKE_PANELS):
        drawn = False
        for index, case in enumerate(cases):
            left = index - bar * len(present[case]) / 2
            for slot, name in enumerate(present[case]):
                rows = plotted[(plotted["case"] == case) & (plotted["series"] == name)]
                rows = rows.dropna(subset=[panel.column])
                if rows.empty:
                    continue
                drawn = True
                colour = colours[name]
                centre = left + bar * (slot + 0.5)
                ax.bar(
                    centre,
                    rows[panel.column].median(),
                    width=bar * 0.9,
                    color=colour,
                    alpha=0.35,
                    edgecolor=colour,
                    linewidth=0.8,
                )
                x = centre + rng.uniform(-0.22, 0.22, len(rows)) * bar
                y = rows[panel.column].to_numpy()
                warn = (rows["status"] != "ok").to_numpy()
                ax.scatter(x[~warn], y[~warn], s=12, color=colour, linewidths=0, zorder=3)
                if warn.any():
                    ax.scatter(
                        x[warn], y[warn], s=30, color=colour, marker="x", linewidths=1.2, zorder=3
                    )
        ax.set_xticks(range(len(cases)), [case.replace(" ", "\n") for case in cases])
        ax.set_xlim(-0.5, len(cases) - 0.5)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        ax.set_title(panel.title)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if not drawn:
            say_empty(ax, panel.column)
    axes[-1, 0].set_xlabel("handshake, certificate, key-exchange group")
    shown = [name for name in order if (plotted["series"] == name).any()]
    handles = [
        mpatches.Patch(facecolor=colours[n], edgecolor=colours[n], alpha=0.6, label=n)
        for n in shown
    ]
    if any(plotted["status"] == "warning"):
        handles.append(
            plt.Line2D([], [], color="grey", marker="x", linestyle="none", label="status warning")
        )
    bottom_legend(fig, handles, [h.get_label() for h in handles])
    fig.suptitle(
        "TLS handshakes: a new connection per request\n"
        f"{csv.parent.name or csv.name}: bars are medians, points iterations"
    )
    return fig


def handshakes_summary(frame, plotted, order, cases, csv: Path) -> str:
    lines = [
        f"# Summary of {csv}",
        "",
        f"{status_line(frame)} Figures are medians over the iterations of rows "
        "whose status is ok or warning (rows with status error are left out; see the end).",
        "Each request is a new connection: handshakes/s is the CSV's `rps`, CPU per "
        "handshake its `server_cpu_us_per_req` (and `proxy_cpu_us_per_req`). A case is "
        "`handshake cert_type tls_kx_group`.",
    ]
    panels = list(HANDSHAKE_PANELS)
    if plotted[TERMINATOR_CPU.column].notna().any():
        panels.append(TERMINATOR_CPU)
    for panel in panels:
        lines += ["", f"## {panel.title}: median, {panel.ylabel}", ""]
        if panel is TERMINATOR_CPU:
            lines += [
                "– where the echo-server terminates TLS itself (https-*): there the server "
                "figure above is all of it.",
                "",
            ]
        lines += case_table(plotted, order, "case", cases, cases, panel)
    lines += flagged_rows(frame, ["config", "tls_backend", *CASE_COLUMNS, "iteration"])
    lines += notes_on_ok_rows(frame)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- idle.csv


@dataclass(frozen=True)
class Part:
    """One process whose memory an idle.csv row measures."""

    column: str
    title: str
    # Said where a series has no figure at all (https-*: no process behind the terminator).
    absent: str


IDLE_PARTS = [
    Part(
        "terminator_kib_per_conn",
        "TLS terminator (proxy, peer, or the echo-server for https-*)",
        "no figure",
    ),
    Part(
        "backend_kib_per_conn",
        "echo-server behind the terminator",
        "none: the echo-server is the terminator",
    ),
]


def render_idle(frame: "pd.DataFrame", csv: Path, out_dir: Path) -> list[Path]:
    """idle.png/.svg and idle-summary.md for one idle.csv."""
    frame = frame.copy()
    frame["series"] = series_names(frame)
    frame["status"] = frame["status"].str.lower()
    # Both processes together; no backend figure (https-*) counts as none.
    frame["total_kib_per_conn"] = frame["terminator_kib_per_conn"] + frame[
        "backend_kib_per_conn"
    ].fillna(0)
    plotted = frame[frame["status"] != "error"]
    order = list(dict.fromkeys(frame["series"]))
    summary = out_dir / "idle-summary.md"
    summary.write_text(idle_summary(frame, plotted, order, csv), encoding="utf-8")
    if plotted.empty:
        raise InputError(
            f"{csv}: no measurement to plot: all {len(frame)} row(s) have status error "
            f"(listed in {summary})"
        )
    fig = idle_figure(plotted, order, palette(order), csv)
    return save(fig, out_dir / "idle") + [summary]


def idle_figure(plotted, order, colours, csv):
    """Two panels side by side sharing both axes (so bar lengths compare across them): a
    horizontal bar per series (the median) with its iterations as points."""
    shown = [name for name in order if (plotted["series"] == name).any()]
    fig, axes = plt.subplots(
        1,
        len(IDLE_PARTS),
        sharex=True,
        sharey=True,
        figsize=(13.0, 1.9 + 0.42 * len(shown)),
        squeeze=False,
        constrained_layout=True,
    )
    rng = np.random.default_rng(0)
    largest = plotted[[p.column for p in IDLE_PARTS]].max().max()
    largest = largest if largest > 0 else 1.0
    for ax, part in zip(axes[0], IDLE_PARTS):
        for y, name in enumerate(shown):
            rows = plotted[plotted["series"] == name].dropna(subset=[part.column])
            if rows.empty:
                ax.text(
                    0.01 * largest, y, part.absent, va="center", fontsize="small", color="grey"
                )
                continue
            colour = colours[name]
            median = rows[part.column].median()
            ax.barh(y, median, height=0.6, color=colour, alpha=0.35, edgecolor=colour)
            x = rows[part.column].to_numpy()
            ys = y + rng.uniform(-0.18, 0.18, len(rows))
            warn = (rows["status"] != "ok").to_numpy()
            ax.scatter(x[~warn], ys[~warn], s=14, color=colour, linewidths=0, zorder=3)
            if warn.any():
                ax.scatter(
                    x[warn], ys[warn], s=30, color=colour, marker="x", linewidths=1.2, zorder=3
                )
            ax.text(
                max(median, x.max()) + 0.01 * largest,
                y,
                f"{median:,.1f}",
                va="center",
                fontsize="small",
            )
        ax.set_title(part.title)
        ax.set_xlabel("KiB of RSS per idle connection")
        ax.set_xlim(0, largest * 1.15)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_yticks(range(len(shown)), shown)
    axes[0][0].invert_yaxis()  # the plan's order, top down
    if any(plotted["status"] == "warning"):
        fig.legend(
            handles=[
                plt.Line2D(
                    [], [], color="grey", marker="x", linestyle="none", label="status warning"
                )
            ],
            loc="outside lower center",
            fontsize="small",
            frameon=False,
        )
    held = plotted["connections"].dropna().unique()
    count = f"{held[0]:,.0f} idle connections" if len(held) == 1 else "idle connections"
    fig.suptitle(
        "Memory per idle TLS connection (RSS growth / connections opened)\n"
        f"{csv.parent.name or csv.name}: {count} held; bars are medians, points iterations"
    )
    return fig


def idle_summary(frame, plotted, order, csv: Path) -> str:
    lines = [
        f"# Summary of {csv}",
        "",
        f"{status_line(frame)} Figures are medians over the iterations of rows "
        "whose status is ok or warning (rows with status error are left out; see the end).",
        "KiB per connection: the growth of the process's resident memory (RSS, with its "
        "children) from before the connections opened to while all were held, divided by "
        "the connections opened. Terminator: our proxy, the peer, or for https-* the "
        "echo-server itself; backend: the echo-server behind it (– where there is none).",
        "",
        "## Memory per idle connection: median, KiB per connection",
        "",
        "| series | n | connections held | terminator | backend | terminator + backend |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    held = "connections_opened" if plotted["connections_opened"].notna().any() else "connections"
    for name in order:
        rows = plotted[plotted["series"] == name]
        cells = [
            str(len(rows)),
            number(rows[held].median(), "{:,.0f}"),
            number(rows["terminator_kib_per_conn"].median(), "{:,.1f}"),
            number(rows["backend_kib_per_conn"].median(), "{:,.1f}"),
            number(rows["total_kib_per_conn"].median(), "{:,.1f}"),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += flagged_rows(frame, ["config", "tls_backend", "iteration"])
    lines += notes_on_ok_rows(frame)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- shared helpers


def number(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def cell(text) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def say_empty(ax, column: str) -> None:
    """Write in the middle of an empty panel that the CSV had no figures for it."""
    ax.text(
        0.5,
        0.5,
        f"no {column} figures in this CSV",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )


def plain_number(value: float, _position=None) -> str:
    """An axis label: 1,500 or 0.5, never 1.5×10³."""
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:g}"


def human_bytes(size: float) -> str:
    """10 B, 1 kB, 10 kB, 1 MB (powers of 10, as the sizes are given)."""
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size:g} B"


KINDS: dict[str, Kind] = {
    kind.file: kind
    for kind in (
        Kind(
            file="results.csv",
            required=(
                "config",
                "size",
                "iteration",
                "p50",
                "p90",
                "p99",
                "rps",
                "mb_per_s",
                "server_cpu_us_per_req",
                "status",
            ),
            text=("config", "status", "tls_backend", "tls_library", "note", "latency_file"),
            optional=("tls_backend", "tls_library", "note", "latency_file"),
            render=render_results,
        ),
        Kind(
            file="handshakes.csv",
            # tls_backend is required here: without it the rustls configs' two backends
            # would fall into one series' medians.
            required=(
                "config",
                "tls_backend",
                "iteration",
                *CASE_COLUMNS,
                "rps",
                "server_cpu_us_per_req",
                "status",
            ),
            text=("config", "tls_backend", "tls_library", *CASE_COLUMNS, "status", "note"),
            optional=("proxy_cpu_us_per_req", "tls_library", "note"),
            render=render_handshakes,
        ),
        Kind(
            file="idle.csv",
            required=(
                "config",
                "tls_backend",
                "iteration",
                "connections",
                "terminator_kib_per_conn",
                "backend_kib_per_conn",
                "status",
            ),
            text=("config", "tls_backend", "tls_library", "status", "note"),
            optional=("connections_opened", "tls_library", "note"),
            render=render_idle,
        ),
    )
}

# The same picture bytes for the same CSV: SVG ids come from this salt, not from a clock.
matplotlib.rcParams["svg.hashsalt"] = "tls-off"

if __name__ == "__main__":
    sys.exit(main())
