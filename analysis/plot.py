#!/usr/bin/env python3
"""Pictures of one harness run, from its CSV alone.

    python3 analysis/plot.py results/<run>/results.csv [--out DIR]

writes, next to the CSV (or into DIR):

- latency.png/.svg: p50, p90 and p99 (one panel each) against request body size, one
  colour per series, every iteration a jittered point, the median of the iterations a line;
- throughput.png/.svg: requests/s and request-body MB/s against body size;
- efficiency.png/.svg: server CPU-µs per request against body size (the fair figure even
  when a run did not saturate the servers);
- summary.md: the median tables behind the plots, and every row whose status is not ok.

A series is a config (the CSV's `config` column), split by `tls_backend` where one config
was measured with more than one backend (e.g. `proxy-rustls (rustls-ring)`). Rows with
status `error` are left out of the plots and listed in the summary; rows with status
`warning` are drawn with a cross and listed too, never silently averaged in.

Only the columns named in `KINDS` are needed; any others are ignored. Exit codes: 0 done,
2 for input that cannot be plotted (missing or empty file, a required column missing,
a figure that is not a number, no row to plot), 1 for anything else. Each failure is one
line on stderr.

Adding a CSV (e.g. a later handshakes.csv): write a `render_<name>(frame, out_dir)` that
returns the paths it wrote and add a `Kind` for its file name to `KINDS`. The CSV's file
name picks the kind; an unknown name is read as a results.csv.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
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


class InputError(Exception):
    """The CSV cannot be plotted; the message says why. Exit code 2."""


@dataclass(frozen=True)
class Kind:
    """One CSV the harness writes, and what to make of it."""

    # Columns the renderer reads; text columns are kept as strings, the rest parsed as numbers.
    required: tuple[str, ...]
    text: tuple[str, ...]
    # Columns used when present (filled with "" when absent).
    optional: tuple[str, ...]
    render: Callable[["pd.DataFrame", Path, Path], list[Path]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plot.py",
        description="Plot a harness run's results.csv (latency, throughput, CPU per request).",
    )
    parser.add_argument("csv", type=Path, help="results/<run>/results.csv")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the pictures and summary.md (default: the CSV's folder)",
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
            f"(a harness results.csv has them all)"
        )
    if frame.empty:
        raise InputError(f"{path}: has a header but no rows")
    for column in kind.optional:
        if column not in frame.columns:
            frame[column] = ""
    for column in kind.required:
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
    plotted = frame[frame["status"] != "error"]
    order = list(dict.fromkeys(frame["series"]))  # first appearance: the plan's order
    colours = palette(order)
    written = []
    summary = out_dir / "summary.md"
    summary.write_text(results_summary(frame, plotted, order, csv), encoding="utf-8")
    if plotted.empty:
        raise InputError(
            f"{csv}: no measurement to plot: all {len(frame)} row(s) have status error "
            f"(listed in {summary})"
        )
    for name, title, panels in FIGURES:
        fig = figure(plotted, order, colours, title, panels, csv)
        written += save(fig, out_dir / name)
    written.append(summary)
    return written


def series_names(frame: "pd.DataFrame") -> "pd.Series":
    """`config`, or `config (tls_backend)` for a config measured with several backends."""
    backends = frame.groupby("config")["tls_backend"].nunique()
    split = set(backends[backends > 1].index)
    return frame.apply(
        lambda r: f"{r['config']} ({r['tls_backend']})" if r["config"] in split else r["config"],
        axis=1,
    ).astype(str)


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


LATENCY = [
    Panel("p50", "p50 latency", "µs", True, "{:,.0f}"),
    Panel("p90", "p90 latency", "µs", True, "{:,.0f}"),
    Panel("p99", "p99 latency", "µs", True, "{:,.0f}"),
]
THROUGHPUT = [
    Panel("rps", "requests per second", "req/s", False, "{:,.0f}"),
    Panel("mb_per_s", "request body throughput", "MB/s (10⁶ bytes)", True, "{:,.2f}"),
]
EFFICIENCY = [
    Panel("server_cpu_us_per_req", "server CPU per request", "CPU-µs per request", True, "{:,.1f}"),
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
            y = rows[panel.column].to_numpy()
            ax.scatter(x[~warn], y[~warn], s=14, color=colour, alpha=0.55, linewidths=0)
            if warn.any():
                ax.scatter(x[warn], y[warn], s=30, color=colour, marker="x", linewidths=1.2)
            medians = rows.groupby("size")[panel.column].median()
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
            ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        ax.set_title(panel.title)
        ax.set_xlabel("request body size")
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, which="major", alpha=0.3)
        if not drawn:
            ax.text(
                0.5,
                0.5,
                f"no {panel.column} figures in this CSV",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    handles, labels = axes[0][0].get_legend_handles_labels()
    if any(frame["status"] == "warning"):
        handles.append(
            plt.Line2D([], [], color="grey", marker="x", linestyle="none", label="status warning")
        )
        labels.append("status warning")
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(handles), 4),
            fontsize="small",
            frameon=False,
        )
    fig.suptitle(f"{title}\n{csv.parent.name or csv.name}: points are iterations, lines medians")
    return fig


def save(fig, stem: Path) -> list[Path]:
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=110)
    # No date in the SVG, so that the same CSV gives the same file.
    fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return [png, svg]


def results_summary(frame, plotted, order, csv: Path) -> str:
    counts = frame["status"].value_counts()
    lines = [
        f"# Summary of {csv}",
        "",
        f"{len(frame)} rows: {counts.get('ok', 0)} ok, {counts.get('warning', 0)} warning, "
        f"{counts.get('error', 0)} error. Figures are medians over the iterations of rows "
        "whose status is ok or warning (rows with status error are left out; see the end).",
        "Latencies in µs; sizes are request body bytes.",
    ]
    sizes = sorted(plotted["size"].dropna().unique())
    for _, _, panels in FIGURES:
        for panel in panels:
            lines += ["", f"## {panel.title}: median, {panel.ylabel}", ""]
            lines += median_table(plotted, order, sizes, panel)
    lines += ["", "## Rows whose status is not ok", ""]
    flagged = frame[frame["status"] != "ok"]
    if flagged.empty:
        lines.append("None.")
    else:
        lines.append("| config | tls_backend | size | iteration | status | note |")
        lines.append("| --- | --- | ---: | ---: | --- | --- |")
        for _, r in flagged.iterrows():
            lines.append(
                f"| {r['config']} | {r['tls_backend']} | {number(r['size'], '{:.0f}')} | "
                f"{number(r['iteration'], '{:.0f}')} | {r['status']} | {cell(r['note'])} |"
            )
    # The harness also notes things on ok rows (e.g. servers sharing a CPU with the load
    # generator): say each distinct note once.
    noted = frame[(frame["status"] == "ok") & (frame["note"] != "")]
    if not noted.empty:
        lines += ["", "## Notes on ok rows", ""]
        for note, n in noted["note"].value_counts().items():
            lines.append(f"- {n} row(s): {cell(note)}")
    return "\n".join(lines) + "\n"


def median_table(plotted, order, sizes, panel: Panel) -> list[str]:
    header = "| series | " + " | ".join(human_bytes(s) for s in sizes) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in sizes) + " |"
    rows = [header, rule]
    medians = plotted.groupby(["series", "size"])[panel.column].median()
    for name in order:
        cells = []
        for size in sizes:
            value = medians.get((name, size), math.nan)
            cells.append(number(value, panel.fmt))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def number(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def cell(text) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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
    "results.csv": Kind(
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
        text=("config", "status"),
        optional=("tls_backend", "note"),
        render=render_results,
    ),
}

# The same picture bytes for the same CSV: SVG ids come from this salt, not from a clock.
matplotlib.rcParams["svg.hashsalt"] = "tls-off"

if __name__ == "__main__":
    sys.exit(main())
