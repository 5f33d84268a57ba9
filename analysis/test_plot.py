"""Tests of plot.py and plot.R on the fixtures in analysis/fixtures/ (shaped like the
harness's output, numbers invented):

- results.csv: 5 configs, the rustls ones in two flavours, 3 sizes, 3 iterations, two
  warning rows and one error row;
- seed-results.csv: a results.csv under the seed preset's 3,000 connections, latencies in
  the hundreds of ms (shown in ms);
- handshakes.csv: 10 TLS variants, full and resumed handshakes with ECDSA and RSA, the
  post-quantum hybrid for rustls-aws-lc only, 3 iterations, one warning row and two error
  rows (one with figures that must stay out of the medians, one with none);
- idle.csv: 10 TLS variants, 3 iterations, one warning row and one error row with figures;
- spectrum/: a real smoke run's results.csv and its latency/*.hgrm (loadgen's distributions,
  see its README), for the percentile spectrum.

    python3 -m pytest -q analysis

Every script run in a child process (each kind through both scripts, and the R bad-input
cases) starts at once when the first test needs one, so that the suite takes about as long
as the slowest of them; plot.py's bad-input cases run in this process through its `main`.

The R tests need `Rscript` with ggplot2 and readr. Where it is missing they are skipped with
the reason printed, except under CI=true, where a missing Rscript is a failure: CI installs it.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import pytest

HERE = Path(__file__).resolve().parent
PLOT_PY = HERE / "plot.py"
PLOT_R = HERE / "plot.R"
FIXTURES = HERE / "fixtures"
FIXTURE = FIXTURES / "results.csv"
MAKE_FIXTURE = FIXTURES / "make_fixture.py"
# A results.csv under the seed preset's load: latencies of hundreds of ms.
SEED_FIXTURE = FIXTURES / "seed-results.csv"
# A real run folder: results.csv with `latency_file`, and the latency/*.hgrm it names.
SPECTRUM_RUN = FIXTURES / "spectrum"
SPECTRUM_FIXTURE = SPECTRUM_RUN / "results.csv"

# What each CSV kind makes: plot.py's files, then plot.R's.
PY_FILES = {
    "results.csv": [
        "latency.png",
        "latency.svg",
        "throughput.png",
        "throughput.svg",
        "efficiency.png",
        "efficiency.svg",
        "seed.png",
        "seed.svg",
        "summary.md",
    ],
    "handshakes.csv": ["handshakes.png", "handshakes.svg", "handshakes-summary.md"],
    "idle.csv": ["idle.png", "idle.svg", "idle-summary.md"],
}
R_FILES = {
    "results.csv": ["latency_r.png", "tls_tax_r.png", "seed_r.png"],
    "handshakes.csv": ["handshakes_r.png"],
    "idle.csv": ["idle_r.png"],
}
KINDS = list(PY_FILES)
SUMMARY = {kind: next(f for f in files if f.endswith(".md")) for kind, files in PY_FILES.items()}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A picture with axes, seven series and a legend is far bigger; an empty canvas is smaller.
MIN_PNG_BYTES = 10_000
# Generous: these machines are small and shared, matplotlib's first import is slow, and
# every script starts at once.
SCRIPT_TIMEOUT_S = 300


# ---------------------------------------------------------------- bad inputs


def without_columns(kind: str, dropped: set[str]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        header, rows = rows_of(FIXTURES / kind)
        keep = [i for i, name in enumerate(header) if name not in dropped]
        return write_rows(
            folder / kind, [header[i] for i in keep], [[r[i] for i in keep] for r in rows]
        )

    return make


def empty_file(folder: Path) -> Path:
    path = folder / "results.csv"
    path.write_text("", encoding="utf-8")
    return path


def header_only(folder: Path) -> Path:
    header, _ = rows_of(FIXTURE)
    return write_rows(folder / "results.csv", header, [])


def no_file(folder: Path) -> Path:
    return folder / "nope" / "results.csv"


def not_a_number(folder: Path) -> Path:
    header, rows = rows_of(FIXTURE)
    rows[4][header.index("p90")] = "fast"
    return write_rows(folder / "results.csv", header, rows)


# The column each kind cannot do without, dropped from its fixture: for handshakes.csv the
# group, without which the hybrid's rows would fall into the X25519 medians.
MISSING_COLUMN = {
    "results.csv": "p99",
    "handshakes.csv": "tls_kx_group",
    "idle.csv": "terminator_kib_per_conn",
}
# The fixtures' two flavours of proxy-rustls, as the series are named.
PROXY_RUSTLS = (
    "proxy-rustls (rustls 0.23.46 + aws-lc-rs 1.19.0)",
    "proxy-rustls (rustls 0.23.46 + ring 0.17.14)",
)
# A CSV of each kind as the harness wrote it before the `tls_library` column (it was added
# last, so dropping it gives exactly the older layout): it must still plot.
OLD_LAYOUT = {kind: without_columns(kind, {"tls_library"}) for kind in MISSING_COLUMN}
# Case name -> makes the input in a folder and returns its path.
BAD_INPUTS: dict[str, Callable[[Path], Path]] = {
    **{f"missing-column-{k}": without_columns(k, {c}) for k, c in MISSING_COLUMN.items()},
    "empty": empty_file,
    "header-only": header_only,
    "no-file": no_file,
    "not-a-number": not_a_number,
}


def broken_distribution(folder: Path) -> Path:
    """A copy of the spectrum run whose distributions each have a row that is not one (on
    line 6), whichever the scripts read first."""
    run = folder / "run"
    shutil.copytree(SPECTRUM_RUN, run)
    for path in (run / "latency").glob("*.hgrm"):
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[5] = "   0.250 half 12"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run / "results.csv"


# ---------------------------------------------------------------- running the scripts


def py_command(csv_path: Path, out: Path) -> list[str]:
    return [sys.executable, str(PLOT_PY), str(csv_path), "--out", str(out)]


def r_command(csv_path: Path, out: Path) -> list[str]:
    return [rscript(), str(PLOT_R), str(csv_path), "--out", str(out)]


class Launched:
    """Child processes started together; each one's result is collected when first asked."""

    def __init__(self) -> None:
        self.procs: dict[str, tuple[subprocess.Popen, Path, Path]] = {}
        self.done: dict[str, tuple[subprocess.CompletedProcess, Path, Path]] = {}

    def start(self, name: str, cmd: list[str], csv_path: Path, out: Path) -> None:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs[name] = (proc, csv_path, out)

    def result(self, name: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
        """(the finished process, its input CSV, its output folder)."""
        if name not in self.done:
            proc, csv_path, out = self.procs[name]
            stdout, stderr = proc.communicate(timeout=SCRIPT_TIMEOUT_S)
            done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
            self.done[name] = (done, csv_path, out)
        return self.done[name]

    def stop(self) -> None:
        for proc, _, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="session")
def launched(tmp_path_factory):
    """Every child-process run of the suite, started at once."""
    runs = Launched()
    for kind in KINDS:
        out = tmp_path_factory.mktemp("py")
        runs.start(f"py {kind}", py_command(FIXTURES / kind, out), FIXTURES / kind, out)
    for kind, make in OLD_LAYOUT.items():
        folder = tmp_path_factory.mktemp("py-old")
        path = make(folder)
        runs.start(f"py old {kind}", py_command(path, folder / "out"), path, folder / "out")
    # The seed preset's latencies (ms), a second run of the fixture (the same bytes), and
    # a run folder with its distributions (the spectrum).
    for name, path in (
        ("py seed", SEED_FIXTURE),
        ("py again", FIXTURE),
        ("py spectrum", SPECTRUM_FIXTURE),
    ):
        out = tmp_path_factory.mktemp("py")
        runs.start(name, py_command(path, out), path, out)
    # One bad input through the real process too: the exit code as the harness sees it.
    folder = tmp_path_factory.mktemp("py-bad")
    path = BAD_INPUTS["missing-column-handshakes.csv"](folder)
    runs.start("py missing-column", py_command(path, folder / "out"), path, folder / "out")
    if shutil.which("Rscript") is not None:
        for kind in KINDS:
            out = tmp_path_factory.mktemp("r")
            runs.start(f"R {kind}", r_command(FIXTURES / kind, out), FIXTURES / kind, out)
        for kind, make in OLD_LAYOUT.items():
            folder = tmp_path_factory.mktemp("r-old")
            path = make(folder)
            runs.start(f"R old {kind}", r_command(path, folder / "out"), path, folder / "out")
        for name, path in (
            ("R seed", SEED_FIXTURE),
            ("R again", FIXTURE),
            ("R spectrum", SPECTRUM_FIXTURE),
        ):
            out = tmp_path_factory.mktemp("r")
            runs.start(name, r_command(path, out), path, out)
        folder = tmp_path_factory.mktemp("r-bad-hgrm")
        path = broken_distribution(folder)
        runs.start("R bad-hgrm", r_command(path, folder / "out"), path, folder / "out")
        for case, make in BAD_INPUTS.items():
            folder = tmp_path_factory.mktemp("r-bad")
            path = make(folder)
            runs.start(f"R {case}", r_command(path, folder / "out"), path, folder / "out")
    yield runs
    runs.stop()


def rscript() -> str:
    """The Rscript to use; skips the test where there is none, fails under CI=true."""
    found = shutil.which("Rscript")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but Rscript is missing: "
                "apt-get install r-base-core r-cran-ggplot2 r-cran-readr"
            )
        pytest.skip("Rscript not found (apt-get install r-base-core r-cran-ggplot2 r-cran-readr)")
    return found


@pytest.fixture(scope="session")
def plot():
    """plot.py imported in-process, for the quick tests of its CSV reading and its `main`."""
    spec = importlib.util.spec_from_file_location("plot", PLOT_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["plot"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_in_process(plot, csv_path: Path, out: Path) -> subprocess.CompletedProcess:
    """plot.py's `main` as the command line would run it, its output captured."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = plot.main([str(csv_path), "--out", str(out)])
    return subprocess.CompletedProcess(["plot.py"], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(params=["plot.py", "plot.R"])
def bad_run(request, tmp_path):
    """For a case of BAD_INPUTS: (result, input path, output folder) from either script."""

    def run(case: str):
        if request.param == "plot.py":
            path = BAD_INPUTS[case](tmp_path)
            out = tmp_path / "out"
            return run_in_process(request.getfixturevalue("plot"), path, out), path, out
        rscript()
        return request.getfixturevalue("launched").result(f"R {case}")

    return run


# ---------------------------------------------------------------- reading CSV and markdown


def rows_of(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


def records(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def series_of(rows: list[dict[str, str]]) -> Callable[[dict[str, str]], str]:
    """The series naming the scripts promise: config plus the TLS library where it is known,
    else config plus the backend where a config has several, else the config."""
    backends: dict[str, set[str]] = {}
    for r in rows:
        backends.setdefault(r["config"], set()).add(r["tls_backend"])

    def name(r: dict[str, str]) -> str:
        library = r.get("tls_library", "")
        if library not in ("", "none", "unknown"):
            return f"{r['config']} ({library})"
        if len(backends[r["config"]]) > 1:
            return f"{r['config']} ({r['tls_backend']})"
        return r["config"]

    return name


def table(summary: str, heading: str) -> dict[str, dict[str, str]]:
    """The markdown table under the `## heading...` line: first cell -> column -> cell."""
    section = summary.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split(" | ")]  # noqa: E731
    header = split(lines[0])
    return {cells[0]: dict(zip(header, cells)) for cells in map(split, lines[2:])}


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > MIN_PNG_BYTES, f"{path} is only {len(data)} bytes"


def check_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), f"{path}: root {root.tag}"
    assert len(list(root.iter())) > 100, f"{path} has almost nothing drawn"


def summary_of(launched, kind: str) -> str:
    result, _, out = launched.result(f"py {kind}")
    assert result.returncode == 0, result.stderr
    return (out / SUMMARY[kind]).read_text(encoding="utf-8")


# ---------------------------------------------------------------- plot.py on the fixtures


@pytest.mark.parametrize("kind", KINDS)
def test_python_writes_every_picture_and_the_summary(launched, kind):
    result, _, out = launched.result(f"py {kind}")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    for name in PY_FILES[kind]:
        path = out / name
        assert path.is_file(), f"{name} missing; stderr: {result.stderr}"
        assert str(path) in printed, f"{path} not printed: {result.stdout}"
        if name.endswith(".png"):
            check_png(path)
        elif name.endswith(".svg"):
            check_svg(path)
    assert len(printed) == len(PY_FILES[kind]), result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_summary_lists_each_series_and_the_rows_that_are_not_ok(launched, kind):
    summary = summary_of(launched, kind)
    rows = records(FIXTURES / kind)
    name = series_of(rows)
    for series in {name(r) for r in rows}:
        assert f"| {series} |" in summary, series
    # Each series names the library its terminator ran; two flavours of one config are
    # two series.
    for series in PROXY_RUSTLS:
        assert f"| {series} |" in summary, series
    assert "| proxy-openssl (OpenSSL 3.6.3) |" in summary
    if kind != "results.csv":
        assert "| haproxy (AWS-LC 5.12.0) |" in summary
        assert "| hitch |" in summary, "an unknown library is left out of the name"
    flagged = [r for r in rows if r["status"] != "ok"]
    for r in flagged:
        assert r["note"] in summary, r["note"]
    warnings = sum(r["status"] == "warning" for r in flagged)
    errors = len(flagged) - warnings
    assert f"{errors} error" in summary and f"{warnings} warning" in summary


@pytest.mark.parametrize("kind", KINDS)
def test_a_csv_without_the_library_column_still_plots(launched, kind):
    result, path, out = launched.result(f"py old {kind}")
    assert result.returncode == 0, result.stderr
    assert "tls_library" not in rows_of(path)[0]
    summary = (out / SUMMARY[kind]).read_text(encoding="utf-8")
    # Without libraries, two flavours of one config are told apart by their backend.
    assert "| proxy-rustls (rustls-aws-lc) |" in summary
    assert "| proxy-rustls (rustls-ring) |" in summary
    assert "| proxy-openssl |" in summary
    assert "OpenSSL" not in summary


def test_results_summary_medians_match_the_csv(launched):
    summary = summary_of(launched, "results.csv")
    p50s = [
        float(r["p50"])
        for r in records(FIXTURE)
        if r["config"] == "http" and r["size"] == "10" and r["status"] != "error"
    ]
    expected = f"| http | {statistics.median(p50s):,.0f} |"
    assert expected in summary, expected


def test_the_tls_tax_is_cpu_above_the_no_tls_floor(launched):
    """proxy-openssl against the relay, https-openssl against plain HTTP, at 10 B; the
    floors themselves have none."""
    summary = summary_of(launched, "results.csv")
    rows = [r for r in records(FIXTURE) if r["size"] == "10" and r["status"] != "error"]

    def median_cpu(config: str) -> float:
        return statistics.median(
            float(r["server_cpu_us_per_req"]) for r in rows if r["config"] == config
        )

    taxes = table(summary, "TLS tax")
    for config, floor, library in (
        ("proxy-openssl", "relay", "OpenSSL 3.6.3"),
        ("https-openssl", "http", "OpenSSL 3.6.3"),
    ):
        expected = median_cpu(config) - median_cpu(floor)
        assert taxes[f"{config} ({library})"]["10 B"] == f"{expected:,.1f}", (config, taxes)
    assert taxes["relay"]["10 B"] == taxes["http"]["10 B"] == "–"


def test_results_error_rows_are_left_out_of_the_medians(launched):
    summary = summary_of(launched, "results.csv")
    rows = records(FIXTURE)
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1
    config, size = failed[0]["config"], failed[0]["size"]
    good = [
        float(r["rps"])
        for r in rows
        if (r["config"], r["size"]) == (config, size) and r["status"] != "error"
    ]
    assert len(good) == 2
    rps_table = summary.split("## requests per second")[1].split("##")[0]
    series = series_of(rows)(failed[0])
    row = next(line for line in rps_table.splitlines() if line.startswith(f"| {series} |"))
    assert row.rstrip(" |").endswith(f"{statistics.median(good):,.0f}"), row


def test_seed_picture_is_the_original_figure_with_a_point_per_iteration(launched):
    result, _, out = launched.result("py results.csv")
    assert result.returncode == 0, result.stderr
    text = (out / "seed.svg").read_text(encoding="utf-8")
    # matplotlib draws text as paths, each after a comment holding the text.
    title = "Reproduction of the original experiment: p50 response time by body size"
    assert f"<!-- {title} -->" in text
    assert "<!-- p50 response time (ms) -->" in text
    assert "<!-- request body size (bytes) -->" in text
    points = next(g for g in ET.fromstring(text).iter() if g.get("id") == "seed-points")
    styles = [u.get("style", "") for u in points.iter("{http://www.w3.org/2000/svg}use")]
    rows = [r for r in records(FIXTURE) if r["status"] != "error"]
    assert len(styles) == len(rows), "one point per iteration, error rows left out"
    warnings = sum(r["status"] == "warning" for r in rows)
    assert warnings > 0
    assert sum("stroke: #ff0000" in style for style in styles) == warnings


def test_seed_picture_draws_p50_in_ms_by_size_as_a_factor(plot):
    frame = plot.load(FIXTURE, plot.KINDS["results.csv"])
    plotted = frame[frame["status"] != "error"].dropna(subset=["p50"])
    fig = plot.seed_figure(plotted, FIXTURE)
    offsets = fig.axes[0].collections[0].get_offsets()
    sizes = sorted(plotted["size"].unique())
    categories = plotted["size"].map(sizes.index).to_numpy()
    # Each point sideways within 0.15 of its size's place, its height the p50 in ms.
    assert (abs(offsets[:, 0] - categories) <= 0.15).all()
    assert list(offsets[:, 1]) == pytest.approx(list(plotted["p50"] / 1000))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["10", "1000", "10000"]


def test_pictures_are_the_same_bytes_from_the_same_csv(launched):
    """The jitter is seeded: a rerun does not move a point."""
    (first, _, one), (again, _, two) = launched.result("py results.csv"), launched.result(
        "py again"
    )
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    for name in ("seed.svg", "seed.png", "latency.svg"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


@pytest.mark.parametrize(
    "largest_us, unit", [(0.0, "µs"), (9_999.0, "µs"), (10_000.0, "µs"), (10_000.5, "ms")]
)
def test_latency_unit_passes_to_ms_above_10000_us(plot, largest_us, unit):
    values = plot.pd.Series([1.0, largest_us, float("nan")])
    assert plot.latency_unit(values).label == unit
    panel = next(p for p in plot.LATENCY if p.column == "p99").shown(values)
    assert panel.ylabel == unit
    assert panel.divisor == (1000.0 if unit == "ms" else 1.0)


def test_latency_unit_without_figures_is_us_and_other_panels_keep_theirs(plot):
    assert plot.latency_unit(plot.pd.Series([], dtype=float)).label == "µs"
    rps = next(p for p in plot.THROUGHPUT if p.column == "rps")
    assert rps.shown(plot.pd.Series([5e6])) is rps


@pytest.mark.parametrize("fixture, unit", [("py results.csv", "µs"), ("py seed", "ms")])
def test_latency_axes_and_tables_name_their_unit(plot, launched, fixture, unit):
    """The quick fixture's latencies stay in µs; the seed preset's, in the hundreds of ms,
    are in ms in the pictures' axes and the summary's tables, the figures divided by 1000."""
    result, path, out = launched.result(fixture)
    assert result.returncode == 0, result.stderr
    other = "ms" if unit == "µs" else "µs"
    svg = (out / "latency.svg").read_text(encoding="utf-8")
    assert svg.count(f"<!-- {unit} -->") == 3 and f"<!-- {other} -->" not in svg
    summary = (out / "summary.md").read_text(encoding="utf-8")
    rows = [r for r in records(path) if r["status"] != "error"]
    name = series_of(rows)
    divisor, fmt = (1000.0, "{:,.1f}") if unit == "ms" else (1.0, "{:,.0f}")
    for column in ("p50", "p90", "p99"):
        assert f"\n## {column} latency: median, {unit}\n" in summary, column
        medians = table(summary, f"{column} latency")
        for r in rows:
            same = [
                float(o[column])
                for o in rows
                if name(o) == name(r) and o["size"] == r["size"] and o[column] != ""
            ]
            cell = medians[name(r)][plot.human_bytes(float(r["size"]))]
            assert cell == fmt.format(statistics.median(same) / divisor), (column, name(r))


# (table heading, CSV column, format): the median tables of handshakes-summary.md.
HANDSHAKE_TABLES = [
    ("handshakes per second", "rps", "{:,.0f}"),
    ("server CPU per handshake", "server_cpu_us_per_req", "{:,.0f}"),
    ("terminator's own CPU per handshake", "proxy_cpu_us_per_req", "{:,.0f}"),
]


@pytest.mark.parametrize("heading, column, fmt", HANDSHAKE_TABLES)
def test_handshakes_summary_medians_match_the_csv(launched, heading, column, fmt):
    summary = summary_of(launched, "handshakes.csv")
    rows = records(FIXTURES / "handshakes.csv")
    name = series_of(rows)
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["status"] == "error" or r[column] == "":
            continue
        case = f"{r['handshake']} {r['cert_type']} {r['tls_kx_group']}"
        groups.setdefault((name(r), case), []).append(float(r[column]))
    medians = table(summary, heading)
    for (series, case), values in groups.items():
        assert medians[series][case] == fmt.format(statistics.median(values)), (series, case)
    # Five cases, the hybrid only where rustls-aws-lc spoke it.
    hybrid = "full ecdsa-p256 X25519MLKEM768"
    aws_lc, ring = PROXY_RUSTLS
    assert len(medians[aws_lc]) == 1 + 5
    assert medians[aws_lc][hybrid] != "–"
    assert medians[ring][hybrid] == "–"
    assert medians["haproxy (AWS-LC 5.12.0)"][hybrid] == "–"


def test_idle_summary_medians_match_the_csv(launched):
    summary = summary_of(launched, "idle.csv")
    rows = records(FIXTURES / "idle.csv")
    name = series_of(rows)
    medians = table(summary, "Memory per idle connection")
    for series in {name(r) for r in rows}:
        measured = [r for r in rows if name(r) == series and r["status"] != "error"]
        line = medians[series]
        assert line["n"] == str(len(measured)), series
        for label, column in (
            ("terminator", "terminator_kib_per_conn"),
            ("backend", "backend_kib_per_conn"),
        ):
            values = [float(r[column]) for r in measured if r[column] != ""]
            expected = f"{statistics.median(values):,.1f}" if values else "–"
            assert line[label] == expected, (series, label)
    # https-* terminate TLS in the echo-server: no backend behind them.
    assert medians["https-openssl (OpenSSL 3.6.3)"]["backend"] == "–"
    assert medians["stunnel (OpenSSL 3.5.9)"]["backend"] != "–"


@pytest.mark.parametrize(
    "kind, heading, column, fmt",
    [
        ("handshakes.csv", "handshakes per second", "rps", "{:,.0f}"),
        ("idle.csv", "Memory per idle connection", "terminator_kib_per_conn", "{:,.1f}"),
    ],
)
def test_error_rows_are_left_out_of_the_medians_and_listed(launched, kind, heading, column, fmt):
    summary = summary_of(launched, kind)
    rows = records(FIXTURES / kind)
    name = series_of(rows)
    # The fixture's error row that has figures: counting it would move its median.
    failed = next(r for r in rows if r["status"] == "error" and r[column] != "")
    case_columns = [c for c in ("handshake", "cert_type", "tls_kx_group") if c in failed]
    good = [
        float(r[column])
        for r in rows
        if name(r) == name(failed)
        and all(r[c] == failed[c] for c in case_columns)
        and r["status"] != "error"
    ]
    assert len(good) == 2
    expected = fmt.format(statistics.median(good))
    assert expected != fmt.format(statistics.median(good + [float(failed[column])]))
    line = table(summary, heading)[name(failed)]
    if kind == "handshakes.csv":
        assert line[" ".join(failed[c] for c in case_columns)] == expected, line
    else:
        assert line["terminator"] == expected, line
        assert line["n"] == "2", line
    assert failed["note"] in summary.split("## Rows whose status is not ok")[1]


def test_a_failed_row_without_a_group_is_listed_as_such(launched):
    # A measurement that never ran has no negotiated group: listed, not a case of its own.
    summary = summary_of(launched, "handshakes.csv")
    lines = [line for line in summary.splitlines() if "starting haproxy" in line]
    assert len(lines) == 1
    assert "| haproxy | openssl | full | rsa-2048 | – | 3 | error |" in lines[0], lines[0]
    assert "| full rsa-2048 |" not in summary


@pytest.mark.parametrize("kind", ["handshakes.csv", "idle.csv"])
def test_only_error_rows_fail_clearly_and_are_still_listed(plot, tmp_path, kind):
    header, rows = rows_of(FIXTURES / kind)
    status = header.index("status")
    for r in rows:
        r[status] = "error"
    path = write_rows(tmp_path / kind, header, rows)
    result = run_in_process(plot, path, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "no measurement to plot" in result.stderr, result.stderr
    assert not list((tmp_path / "out").glob("*.png"))
    summary = (tmp_path / "out" / SUMMARY[kind]).read_text(encoding="utf-8")
    assert f"{len(rows)} error" in summary


def test_extra_and_reordered_columns_are_ignored(plot, tmp_path):
    header, rows = rows_of(FIXTURE)
    # A later harness may add columns anywhere; order must not matter either.
    header = ["handshakes_per_s"] + header[::-1]
    rows = [["12.5"] + r[::-1] for r in rows]
    path = write_rows(tmp_path / "results.csv", header, rows)
    frame = plot.load(path, plot.KINDS["results.csv"])
    assert len(frame) == len(rows)
    assert frame["p99"].notna().sum() == len(rows) - 1  # the error row has no figures


@pytest.mark.parametrize("kind", [*KINDS, SEED_FIXTURE.name])
def test_fixture_is_what_its_script_writes(kind):
    spec = importlib.util.spec_from_file_location("make_fixture", MAKE_FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (FIXTURES / kind).read_text(encoding="utf-8") == module.FIXTURES[kind](), (
        f"analysis/fixtures/{kind} is stale: python3 analysis/fixtures/make_fixture.py"
    )


def test_handshakes_fixture_has_the_columns_of_results(plot):
    # The harness writes both with one header (harness/src/output.rs, COLUMNS).
    assert rows_of(FIXTURES / "handshakes.csv")[0] == rows_of(FIXTURE)[0]
    for kind in KINDS:
        header = rows_of(FIXTURES / kind)[0]
        assert set(plot.KINDS[kind].required) <= set(header), kind


# ---------------------------------------------------------------- the percentile spectrum


@pytest.fixture(scope="session")
def hgrm():
    """hgrm.py (plot.py's reader of the distributions), imported in-process."""
    spec = importlib.util.spec_from_file_location("hgrm", HERE / "hgrm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_draws_the_spectrum_from_the_runs_distributions(launched):
    result, path, out = launched.result("py spectrum")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    for name in ("spectrum.png", "spectrum.svg"):
        assert str(out / name) in printed, result.stdout
    check_png(out / "spectrum.png")
    check_svg(out / "spectrum.svg")
    svg = (out / "spectrum.svg").read_text(encoding="utf-8")
    # matplotlib writes each text as a comment before its paths.
    assert "<!-- Latency by percentile (HdrHistogram's percentile spectrum) -->" in svg
    for label in ("50%", "90%", "99%", "99.9%"):
        assert f"<!-- {label} -->" in svg, label
    sizes = {float(r["size"]) for r in records(path)}
    for size in sizes:
        assert f"<!-- {human_bytes(size)} request body -->" in svg, size
    assert "spectrum.png skipped" not in result.stderr


def test_the_spectrum_is_each_series_median_iteration_by_p99(plot, hgrm):
    frame = plot.load(SPECTRUM_FIXTURE, plot.KINDS["results.csv"])
    frame["series"] = plot.series_names(frame)
    plotted = frame[frame["status"] != "error"]
    spectra = plot.spectrum_data(plotted, SPECTRUM_FIXTURE)
    rows = records(SPECTRUM_FIXTURE)
    name = series_of(rows)
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        if r["status"] != "error":
            groups.setdefault((name(r), r["size"]), []).append(r)
    assert len(groups) == len(spectra.groupby(["series", "size"]))
    for (series, size), members in groups.items():
        assert len(members) == 3, "the fixture has three iterations"
        middle = sorted(members, key=lambda r: (float(r["p99"]), int(r["iteration"])))[1]
        drawn = spectra[(spectra["series"] == series) & (spectra["size"] == float(size))]
        assert set(drawn["iteration"]) == {float(middle["iteration"])}, (series, size)
        dist = hgrm.read(SPECTRUM_RUN / middle["latency_file"])
        below = dist[dist["percentile"] < 1.0]
        assert list(drawn["latency_us"]) == pytest.approx(list(below["value_ms"] * 1000))
        # The file is the row's distribution: its largest value is the row's max (µs).
        assert dist["value_ms"].iloc[-1] * 1000 == pytest.approx(float(middle["max"]), abs=1)
        assert dist["total_count"].iloc[-1] == int(middle["requests"])


def test_a_run_without_distributions_skips_the_spectrum_with_a_line(launched):
    result, _, out = launched.result("py results.csv")
    assert result.returncode == 0, result.stderr
    assert "spectrum.png skipped" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (out / "spectrum.png").exists()


def test_a_distribution_that_is_not_one_is_named_and_nothing_is_written(plot, tmp_path):
    path = broken_distribution(tmp_path)
    result = run_in_process(plot, path, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert ".hgrm: line 6: '0.250 half 12' is not a percentile row" in result.stderr
    assert not list((tmp_path / "out").glob("*"))


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "no `Value Percentile TotalCount` header"),
        ("Value Percentile TotalCount 1/(1-Percentile)\n\n#[Mean = 1]\n", "no percentile rows"),
        ("Value Percentile TotalCount\n 1.0 2.0 3\n", "percentile 2.0 is not in 0..1"),
        ("Value Percentile TotalCount\n 1.0 0.5\n", "line 2: '1.0 0.5' is not a percentile row"),
    ],
)
def test_hgrm_refuses_what_is_not_a_percentile_distribution(hgrm, tmp_path, text, says):
    path = tmp_path / "x.hgrm"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(hgrm.HgrmError, match=re.escape(says)):
        hgrm.read(path)


def test_hgrm_picks_the_lower_middle_of_an_even_count(hgrm, plot):
    rows = plot.pd.DataFrame(
        {
            "series": ["a"] * 4 + ["b"],
            "size": [10.0] * 5,
            "iteration": [1, 2, 3, 4, 1],
            "p99": [40.0, 10.0, 30.0, 20.0, 5.0],
        }
    )
    picked = hgrm.representative(rows)
    assert list(zip(picked["series"], picked["iteration"])) == [("a", 4), ("b", 1)]


def test_r_draws_the_spectrum_and_names_a_bad_distribution(launched):
    rscript()
    result, _, out = launched.result("R spectrum")
    assert result.returncode == 0, result.stderr
    assert str(out / "spectrum_r.png") in result.stdout.split(), result.stdout
    check_png(out / "spectrum_r.png")
    result, _, out = launched.result("R results.csv")
    assert "spectrum_r.png skipped" in result.stderr, result.stderr
    assert not (out / "spectrum_r.png").exists()
    result, _, _ = launched.result("R bad-hgrm")
    assert result.returncode == 2, result.stderr
    assert "'0.250 half 12' is not a percentile row" in result.stderr, result.stderr


def human_bytes(size: float) -> str:
    """plot.py's panel titles: 10 B, 1 kB, 10 kB."""
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size:g} B"


# ---------------------------------------------------------------- plot.R on the fixtures


@pytest.mark.parametrize("layout", ["", "old "])
@pytest.mark.parametrize("kind", KINDS)
def test_r_writes_its_picture(launched, kind, layout):
    rscript()
    result, _, out = launched.result(f"R {layout}{kind}")
    assert result.returncode == 0, result.stderr
    for name in R_FILES[kind]:
        path = out / name
        assert str(path) in result.stdout.split(), result.stdout
        check_png(path)


def test_r_draws_the_seed_fixture_and_the_same_pictures_again(launched):
    rscript()
    result, _, out = launched.result("R seed")
    assert result.returncode == 0, result.stderr
    for name in R_FILES["results.csv"]:
        check_png(out / name)
    (first, _, one), (again, _, two) = launched.result("R results.csv"), launched.result(
        "R again"
    )
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    for name in R_FILES["results.csv"]:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


# ---------------------------------------------------------------- both: bad input


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_column_is_named(bad_run, kind):
    result, _, out = bad_run(f"missing-column-{kind}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    column = MISSING_COLUMN[kind]
    assert column in lines[0] and "column" in lines[0], lines[0]
    assert f"harness {kind}" in lines[0], lines[0]
    assert not out.exists() or not list(out.glob("*.png")), list(out.iterdir())


def test_a_missing_column_exits_2_from_the_command_line(launched):
    result, _, out = launched.result("py missing-column")
    assert result.returncode == 2, result.stderr
    assert "tls_kx_group" in result.stderr, result.stderr
    assert result.stdout == "" and not out.exists()


def test_an_empty_csv_fails_clearly(bad_run):
    result, _, _ = bad_run("empty")
    assert result.returncode == 2, result.stderr
    assert "empty" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_header_without_rows_fails_clearly(bad_run):
    result, _, _ = bad_run("header-only")
    assert result.returncode == 2, result.stderr
    assert "no rows" in result.stderr, result.stderr


def test_a_missing_file_is_named(bad_run):
    result, path, _ = bad_run("no-file")
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and "no such file" in result.stderr, result.stderr


def test_a_figure_that_is_not_a_number_is_named(bad_run):
    result, _, _ = bad_run("not-a-number")
    assert result.returncode == 2, result.stderr
    assert "p90" in result.stderr and "'fast'" in result.stderr, result.stderr
    assert "row 5" in result.stderr, result.stderr
