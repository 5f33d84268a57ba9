"""Tests of plot.py and plot.R on analysis/fixtures/results.csv (a fixture shaped like the
harness's output: 5 configs, the rustls ones in two flavours, 3 sizes, 3 iterations, two
warning rows and one error row).

    python3 -m pytest -q analysis

The R tests need `Rscript` with ggplot2 and readr. Where it is missing they are skipped with
the reason printed, except under CI=true, where a missing Rscript is a failure: CI installs it.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PLOT_PY = HERE / "plot.py"
PLOT_R = HERE / "plot.R"
FIXTURE = HERE / "fixtures" / "results.csv"
MAKE_FIXTURE = HERE / "fixtures" / "make_fixture.py"

PY_FILES = [
    "latency.png",
    "latency.svg",
    "throughput.png",
    "throughput.svg",
    "efficiency.png",
    "efficiency.svg",
    "summary.md",
]
R_FILES = ["latency_r.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A picture with axes, seven series and a legend is far bigger; an empty canvas is smaller.
MIN_PNG_BYTES = 10_000
# Generous: these machines are small and shared, and matplotlib's first import is slow.
SCRIPT_TIMEOUT_S = 300


# ---------------------------------------------------------------- helpers


def run_py(csv_path: Path, out: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, str(PLOT_PY), str(csv_path), "--out", str(out)])


def run_r(csv_path: Path, out: Path) -> subprocess.CompletedProcess:
    return run([rscript(), str(PLOT_R), str(csv_path), "--out", str(out)])


RUNNERS = {"plot.py": run_py, "plot.R": run_r}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=False
    )


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


def rows_of(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def without_columns(path: Path, dropped: set[str]) -> Path:
    header, rows = rows_of(FIXTURE)
    keep = [i for i, name in enumerate(header) if name not in dropped]
    return write_rows(path, [header[i] for i in keep], [[r[i] for i in keep] for r in rows])


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > MIN_PNG_BYTES, f"{path} is only {len(data)} bytes"


def check_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), f"{path}: root {root.tag}"
    assert len(list(root.iter())) > 100, f"{path} has almost nothing drawn"


def plot_module():
    """plot.py imported in-process, for the quick tests of its CSV reading."""
    spec = importlib.util.spec_from_file_location("plot", PLOT_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["plot"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def py_run(tmp_path_factory):
    """plot.py on the fixture, once for the module (it takes seconds)."""
    out = tmp_path_factory.mktemp("py")
    return run_py(FIXTURE, out), out


# ---------------------------------------------------------------- plot.py on the fixture


def test_python_writes_every_picture_and_the_summary(py_run):
    result, out = py_run
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    for name in PY_FILES:
        path = out / name
        assert path.is_file(), f"{name} missing; stderr: {result.stderr}"
        assert str(path) in printed, f"{path} not printed: {result.stdout}"
        if name.endswith(".png"):
            check_png(path)
        elif name.endswith(".svg"):
            check_svg(path)


def test_summary_has_each_config_and_the_rows_that_are_not_ok(py_run):
    result, out = py_run
    assert result.returncode == 0, result.stderr
    summary = (out / "summary.md").read_text(encoding="utf-8")
    header, rows = rows_of(FIXTURE)
    col = {name: i for i, name in enumerate(header)}
    for config in {r[col["config"]] for r in rows}:
        assert f"| {config}" in summary, config
    # Two flavours of one config are two series.
    assert "proxy-rustls (rustls-aws-lc)" in summary
    assert "proxy-rustls (rustls-ring)" in summary
    for r in rows:
        if r[col["status"]] != "ok":
            assert r[col["note"]] in summary, r[col["note"]]
    assert "1 error" in summary and "2 warning" in summary


def test_summary_medians_match_the_csv(py_run):
    result, out = py_run
    assert result.returncode == 0, result.stderr
    header, rows = rows_of(FIXTURE)
    col = {name: i for i, name in enumerate(header)}
    p50s = [
        float(r[col["p50"]])
        for r in rows
        if r[col["config"]] == "http" and r[col["size"]] == "10" and r[col["status"]] != "error"
    ]
    expected = f"| http | {statistics.median(p50s):,.0f} |"
    assert expected in (out / "summary.md").read_text(encoding="utf-8"), expected


def test_error_rows_are_left_out_of_the_medians(py_run):
    result, out = py_run
    assert result.returncode == 0, result.stderr
    header, rows = rows_of(FIXTURE)
    col = {name: i for i, name in enumerate(header)}
    failed = [r for r in rows if r[col["status"]] == "error"]
    assert len(failed) == 1
    config, size = failed[0][col["config"]], failed[0][col["size"]]
    good = [
        float(r[col["rps"]])
        for r in rows
        if (r[col["config"]], r[col["size"]]) == (config, size) and r[col["status"]] != "error"
    ]
    assert len(good) == 2
    summary = (out / "summary.md").read_text(encoding="utf-8")
    rps_table = summary.split("## requests per second")[1].split("##")[0]
    row = next(line for line in rps_table.splitlines() if line.startswith(f"| {config} |"))
    assert row.rstrip(" |").endswith(f"{statistics.median(good):,.0f}"), row


def test_extra_and_reordered_columns_are_ignored(tmp_path):
    header, rows = rows_of(FIXTURE)
    # A later harness may add columns anywhere; order must not matter either.
    header = ["handshakes_per_s"] + header[::-1]
    rows = [["12.5"] + r[::-1] for r in rows]
    path = write_rows(tmp_path / "results.csv", header, rows)
    plot = plot_module()
    frame = plot.load(path, plot.KINDS["results.csv"])
    assert len(frame) == len(rows)
    assert frame["p99"].notna().sum() == len(rows) - 1  # the error row has no figures


def test_fixture_is_what_its_script_writes():
    spec = importlib.util.spec_from_file_location("make_fixture", MAKE_FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert FIXTURE.read_text(encoding="utf-8") == module.render(), (
        "analysis/fixtures/results.csv is stale: python3 analysis/fixtures/make_fixture.py"
    )


# ---------------------------------------------------------------- plot.R on the fixture


def test_r_writes_the_latency_picture(tmp_path):
    result = run_r(FIXTURE, tmp_path)
    assert result.returncode == 0, result.stderr
    for name in R_FILES:
        path = tmp_path / name
        assert str(path) in result.stdout.split(), result.stdout
        check_png(path)


# ---------------------------------------------------------------- both: bad input


@pytest.mark.parametrize("script", RUNNERS)
def test_a_missing_column_is_named(script, tmp_path):
    path = without_columns(tmp_path / "results.csv", {"p99"})
    result = RUNNERS[script](path, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "p99" in lines[0] and "column" in lines[0], lines[0]
    assert not (tmp_path / "out" / "latency.png").exists()


@pytest.mark.parametrize("script", RUNNERS)
def test_an_empty_csv_fails_clearly(script, tmp_path):
    empty = tmp_path / "results.csv"
    empty.write_text("", encoding="utf-8")
    result = RUNNERS[script](empty, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "empty" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("script", RUNNERS)
def test_a_header_without_rows_fails_clearly(script, tmp_path):
    header, _ = rows_of(FIXTURE)
    path = write_rows(tmp_path / "results.csv", header, [])
    result = RUNNERS[script](path, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "no rows" in result.stderr, result.stderr


@pytest.mark.parametrize("script", RUNNERS)
def test_a_missing_file_is_named(script, tmp_path):
    path = tmp_path / "nope" / "results.csv"
    result = RUNNERS[script](path, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and "no such file" in result.stderr, result.stderr


@pytest.mark.parametrize("script", RUNNERS)
def test_a_figure_that_is_not_a_number_is_named(script, tmp_path):
    header, rows = rows_of(FIXTURE)
    rows[4][header.index("p90")] = "fast"
    path = write_rows(tmp_path / "results.csv", header, rows)
    result = RUNNERS[script](path, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "p90" in result.stderr and "'fast'" in result.stderr, result.stderr
    assert "row 5" in result.stderr, result.stderr
