"""`uvmlab report`: one self-contained HTML page, checked in headless Chromium; the plots."""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from uvmlab.api import simulate_sampled
from uvmlab.core.errors import UvmlabError
from uvmlab.results import plots
from uvmlab.results.report import render_report
from uvmlab.results.result import Result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG = b"\x89PNG\r\n\x1a\n"


def uvmlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "uvmlab", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


class Page(HTMLParser):
    """What a test needs from a page: body attributes, tables, images, numeric cells."""

    def __init__(self, text):
        super().__init__()
        self.body = {}
        self.tables = {}
        self.images = []
        self.cells = []  # (table id, run row, key, value)
        self._table = None
        self._row = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = 0
        elif tag == "tr" and self._table:
            self._row = a.get("data-run")
            self.tables[self._table] += 1
        elif tag == "td" and "data-key" in a:
            self.cells.append((self._table, self._row, a["data-key"], int(a["data-value"])))
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    a, b = d / "fits.json", d / "over.parquet"
    r1 = uvmlab("run", "stream:size=8MiB,passes=2", "--out", str(a))
    r2 = uvmlab("run", "stream:size=8MiB,passes=2", "--gpu-memory", "150%", "--parquet", str(b))
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    return d, [a, b]


def headless_dom(path, profile_dir):
    """Load ``path`` in headless Chromium; return (DOM after load, Chromium's log)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        path.as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def need_chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")


@pytest.mark.slow
def test_report_loads_in_headless_chromium_with_the_runs_numbers(runs, tmp_path):
    need_chromium()
    d, files = runs
    out = tmp_path / "report.html"
    r = uvmlab("report", *map(str, files), "-o", str(out))
    assert r.returncode == 0, r.stderr
    dom, log = headless_dom(out, tmp_path / "profile")
    page = Page(dom)
    # loaded without script errors or console messages, every image decoded
    assert page.body.get("data-report") == "uvmlab"
    assert page.body.get("data-js-errors") == "0"
    assert ":CONSOLE" not in log, [ln for ln in log.splitlines() if ":CONSOLE" in ln]
    # comparison bars + per run: residency heatmap and activity plot
    assert len(page.images) == 5
    assert page.body.get("data-images-loaded") == page.body.get("data-images-total") == "5"
    assert {"summary-table", "counters-table", "ops-0", "ops-1"} <= set(page.tables)
    assert page.tables["summary-table"] == 3  # header + one row per run
    results = [Result.load(f) for f in files]
    for i, res in enumerate(results):
        shown = {k: v for t, run, k, v in page.cells if t == "summary-table" and run == str(i)}
        for k in ("time_ns", "gpu_faults", "fault_batches", "bytes_htod", "bytes_dtoh", "evictions"):
            assert shown[k] == res.totals[k], k
    counters = [(k, v) for t, _, k, v in page.cells if t == "counters-table"]
    for i, res in enumerate(results):
        assert [v for k, v in counters if k == "gpu_faults"][i] == res.totals["gpu_faults"]
    assert results[1].totals["evictions"] > 0  # the page shows an oversubscribed run
    assert "over" in dom and "fits" in dom  # runs labelled by file name


def test_report_is_self_contained(runs):
    _, files = runs
    html = render_report([Result.load(f) for f in files])
    page = Page(html)
    assert page.images and all(i["src"].startswith("data:image/png;base64,") for i in page.images)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<link" not in html


def test_report_of_one_run_without_samples_or_events():
    res = simulate_sampled("random:size=4MiB,seed=1")
    res.samples = None
    page = Page(render_report([res], title="one"))
    assert len(page.images) == 1  # activity from the per-op rows, no heatmap, no comparison
    assert page.tables["summary-table"] == 2


def test_plots_render_png():
    res = simulate_sampled("stream:size=4MiB,passes=2", gpu_memory="150%", events=True)
    other = simulate_sampled("stream:size=4MiB,passes=2")
    figs = [
        plots.residency_heatmap(res),
        plots.activity_plot(res),
        plots.comparison_bars([res, other], ["150%", "fits"]),
    ]
    for f in figs:
        assert plots.png_bytes(f, dpi=40).startswith(PNG)
    res.events = None  # activity falls back to samples, then to per-op rows
    assert plots.activity_series(res)[3] == "samples"
    res.samples = None
    assert plots.activity_series(res)[3] == "ops"
    with pytest.raises(UvmlabError, match="no residency samples"):
        plots.residency_heatmap(res)


@pytest.mark.slow  # subprocesses of the CLI or long model runs
def test_plot_command_and_its_errors(runs, tmp_path):
    _, files = runs
    out = tmp_path / "heat.png"
    r = uvmlab("plot", "residency", str(files[1]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(PNG)
    r = uvmlab("plot", "residency", *map(str, files), "-o", str(out))
    assert r.returncode != 0 and "one run" in r.stderr and "Traceback" not in r.stderr
    r = uvmlab("plot", "pie", str(files[0]))
    assert r.returncode != 0 and "unknown plot" in r.stderr
    r = uvmlab("report", str(tmp_path / "nope.json"))
    assert r.returncode != 0 and "nope.json" in r.stderr and "Traceback" not in r.stderr
