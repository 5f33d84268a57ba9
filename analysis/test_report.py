"""The run report (index.html, written by `harness report`) in a real browser: headless
Chromium, Debian's (/usr/bin/chromium), driven by Playwright for Python.

A fixture run folder is made from analysis/fixtures (the three scenarios' CSV files and
meta.json), plot.py draws it, `harness report` writes its page, and the browser opens the
page from the file system. The tests check that no request left the file system (every URL
the page asked for is file: or data:), that every picture rendered at a non-zero size, that
the sections, the meta, the flagged rows' notes and the links are there, and take a
screenshot. The page `harness compare` writes (compare.html) is opened the same way.

    python3 -m pip install -r analysis/requirements-browser.txt    # playwright
    apt-get install chromium                                        # the browser
    cargo build -p harness                                          # the page's writer
    python3 -m pytest -q analysis/test_report.py

The harness binary is $HARNESS_BIN, else the newer of target/{debug,release}/harness
(under $CARGO_TARGET_DIR when set). Playwright's own browser downloads are never used.
Where chromium, playwright or the binary is missing the tests are skipped with the reason,
except under CI=true, where that is a failure: CI installs all three.

    UPDATE_EXAMPLE_REPORT=1 python3 -m pytest -q analysis/test_report.py

also writes analysis/example-report.png, the README's picture of the page.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = HERE / "fixtures"
PLOT_PY = HERE / "plot.py"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing of Chromium's own that talks to the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSVS = ["results.csv", "handshakes.csv", "idle.csv"]
# The pictures plot.py draws of the fixtures, one <img class="plot"> each.
PLOTS = ["latency", "throughput", "efficiency", "seed", "handshakes", "idle"]
# No "closing-table": the fixture folder has no summary.txt (the harness writes it at the
# end of a run; `harness report` shows it where there is one).
SECTIONS = ["run", "sweep", "handshakes", "idle", "files"]
# The README's screenshot: the page at 1200 px wide from its top to the end of the first
# picture (title, meta, the latency figure), in 256 colours so it is small enough to commit.
VIEWPORT = {"width": 1200, "height": 900}
EXAMPLE = HERE / "example-report.png"
EXAMPLE_UNTIL = "#figure-latency"
EXAMPLE_MAX_BYTES = 300_000
# Generous: matplotlib's first import is slow on a small shared machine.
TIMEOUT_S = 300


def missing(what: str, how: str):
    """Skips the test, or fails it under CI=true (CI installs everything)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {what} is missing: {how}")
    pytest.skip(f"{what} not found ({how})")


def harness_bin() -> Path:
    if os.environ.get("HARNESS_BIN"):
        path = Path(os.environ["HARNESS_BIN"])
        if not path.is_file():
            missing(f"HARNESS_BIN={path}", "cargo build -p harness")
        return path
    targets = [ROOT / "target"]
    if os.environ.get("CARGO_TARGET_DIR"):
        targets.insert(0, Path(os.environ["CARGO_TARGET_DIR"]))
    found = [t / p / "harness" for t in targets for p in ("debug", "release")]
    found = [p for p in found if p.is_file()]
    if not found:
        missing("the harness binary", "cargo build -p harness, or set HARNESS_BIN")
    # The newest: an old build would test an old page.
    return max(found, key=lambda p: p.stat().st_mtime)


def sync_playwright():
    """Playwright's entry point, once chromium and playwright are known to be there."""
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        missing("playwright", "python3 -m pip install -r analysis/requirements-browser.txt")
    if not CHROMIUM.is_file():
        missing(str(CHROMIUM), "apt-get install chromium")
    return start


@pytest.fixture(scope="module")
def tools():
    """The harness binary and Playwright, checked before anything is drawn."""
    return harness_bin(), sync_playwright()


@pytest.fixture(scope="module")
def run_folder(tools, tmp_path_factory) -> Path:
    """A fixture run folder, drawn by plot.py, with the page `harness report` wrote."""
    harness, _ = tools
    run = tmp_path_factory.mktemp("report") / "20250101T120000Z-fixture"
    (run / "logs").mkdir(parents=True)
    (run / "configs").mkdir()
    (run / "logs" / "children.tsv").write_text("pid\tmeasurement\tprogram\n", encoding="utf-8")
    for name in [*CSVS, "meta.json"]:
        shutil.copy(FIXTURES / name, run / name)
    plots = [
        subprocess.Popen(
            [sys.executable, str(PLOT_PY), str(run / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in CSVS
    ]
    for proc in plots:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, f"{proc.args}: {out}{err}"
    done = subprocess.run(
        [str(harness), "report", str(run)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "index.html").is_file(), done.stdout
    return run


@pytest.fixture(scope="module")
def browser(tools, run_folder):
    """The page open in headless Chromium, with every request and console message."""
    _, start = tools
    with start() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.goto((run_folder / "index.html").as_uri(), wait_until="load")
        yield page, requests, console
        chromium.close()


def test_no_request_leaves_the_file_system(browser):
    page, requests, console = browser
    assert requests, "the page itself is a request"
    for url in requests:
        assert urlparse(url).scheme in ("file", "data"), url
    # Chromium reports a request the page's Content-Security-Policy blocks both here and as
    # an error on the console (checked with an <img src="http://...">).
    assert not [m for m in console if m.startswith("error")], console


def test_every_plot_rendered(browser):
    page, _, _ = browser
    images = page.query_selector_all("img.plot")
    assert [i.get_attribute("alt") for i in images] == PLOTS
    for image in images:
        image.scroll_into_view_if_needed()
        box = image.bounding_box()
        alt = image.get_attribute("alt")
        assert box and box["width"] > 0 and box["height"] > 0, (alt, box)
        natural = image.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
        assert natural[0] and natural[1] > 0 and natural[2] > 0, (alt, natural)
        assert image.get_attribute("src").startswith("data:image/svg+xml;base64,"), alt


def test_sections_meta_and_flagged_rows_are_there(browser, run_folder):
    page, _, _ = browser
    ids = page.eval_on_selector_all("section", "s => s.map(x => x.id)")
    assert ids == SECTIONS
    meta = page.inner_text("#run")
    for expected in ["harness", "0-2", "TLSv1.3", "X25519", "ecdsa-p256", "rustls 0.23.46"]:
        assert expected in meta, expected
    for name in CSVS:
        text = page.inner_text(f"#{section_of(name)}")
        for note in flagged_notes(run_folder / name):
            assert note in text, (name, note)
        assert page.query_selector(f"#{section_of(name)} table"), name


def test_links_point_at_files_in_the_folder(browser, run_folder):
    page, _, _ = browser
    hrefs = page.eval_on_selector_all("a", "a => a.map(x => x.getAttribute('href'))")
    files = [h for h in hrefs if not h.startswith("#")]
    for name in [*CSVS, "meta.json", "summary.md", "logs/", "configs/"]:
        assert name in files, name
    for href in files:
        assert (run_folder / unquote(href)).exists(), href


def test_screenshot(browser, tmp_path):
    page, _, _ = browser
    path = tmp_path / "report.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    bottom = page.eval_on_selector(EXAMPLE_UNTIL, "e => e.getBoundingClientRect().bottom + scrollY")
    assert width == VIEWPORT["width"] and height > bottom > VIEWPORT["height"], (width, height)
    if os.environ.get("UPDATE_EXAMPLE_REPORT") == "1":
        write_example(page, bottom + 8)
    assert EXAMPLE.is_file(), "UPDATE_EXAMPLE_REPORT=1 writes it"
    assert EXAMPLE.stat().st_size < EXAMPLE_MAX_BYTES, EXAMPLE.stat().st_size


def write_example(page, height: float) -> None:
    """The top of the page down to `height` px, as a 256-colour PNG (Pillow comes with
    matplotlib)."""
    from PIL import Image

    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
    shot = Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True)))
    shot.convert("RGB").quantize(colors=256).save(EXAMPLE, optimize=True)


def section_of(csv_name: str) -> str:
    return {"results.csv": "sweep", "handshakes.csv": "handshakes", "idle.csv": "idle"}[csv_name]


def flagged_notes(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r["note"] for r in csv.DictReader(f) if r["status"] != "ok"]


def test_the_comparison_page_opens_offline(tools, browser, run_folder, tmp_path):
    """`harness compare` writes a page too: the fixture run against itself, opened in a new
    tab of the same browser (its requests join the context's list)."""
    harness, _ = tools
    report_page, requests, _ = browser
    page_path = tmp_path / "compare.html"
    done = subprocess.run(
        [str(harness), "compare", str(run_folder), str(run_folder), "--html", str(page_path),
         "--fail-on-regression", "5%"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = report_page.context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.goto(page_path.as_uri(), wait_until="load")
    assert page_path.as_uri() in requests
    assert all(urlparse(u).scheme in ("file", "data") for u in requests), requests
    assert not [m for m in console if m.startswith("error")], console
    ids = page.eval_on_selector_all("section", "s => s.map(x => x.id)")
    assert ids[0] == "runs" and "scenario-sweep" in ids and ids[-1] == "gate", ids
    assert page.query_selector_all("#scenario-sweep tbody tr"), "the sweep's table has rows"
    box = page.query_selector("#scenario-sweep table").bounding_box()
    assert box and box["width"] > 0 and box["height"] > 0, box
    assert "regression gate (5%): pass" in page.inner_text("#gate")
    page.close()
