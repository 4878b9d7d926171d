"""The committed report, and the report the tiny study builds in the same test run, open in a real
browser: every image loads, no script error occurs. A screenshot is kept under test-artifacts/ for a
person to look at."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.browser

REPORT = ROOT / "reports" / "index.html"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# Put first in <head>: records script errors, then on load writes what loaded into the DOM.
CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  document.documentElement.setAttribute('data-check', JSON.stringify(
    {images: images.length, broken: broken, errors: window.__errors,
     width: document.documentElement.scrollWidth}));
});
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is needed for this test: `make test` installs it (apt-get install chromium)")
    return path


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(params=["committed", "committed extended", "tiny study"])
def report(request) -> Path:
    """The committed report, the committed extended studies' report, or the one the tiny study
    (conftest's ``study``) has just built."""
    if request.param == "committed extended":
        return ROOT / "reports" / "extended" / "index.html"
    if request.param == "committed":
        return REPORT
    return request.getfixturevalue("study") / "reports" / "index.html"


def test_report_renders_with_every_image_and_no_script_error(report, tmp_path):
    source = report.read_text()
    page = tmp_path / "index.html"
    page.write_text(source.replace("<head>", "<head>" + CHECK, 1))
    result = _run(
        ["--virtual-time-budget=10000", "--window-size=1280,900", "--dump-dom", page.as_uri()], tmp_path / "profile"
    )
    match = re.search(r"data-check=\"([^\"]*)\"", result.stdout)
    assert match, f"the page did not finish loading: {result.stderr[-2000:]}"
    check = json.loads(match.group(1).replace("&quot;", '"'))
    assert check["images"] == source.count("<img") >= 5 and check["broken"] == []
    assert check["errors"] == []
    assert check["width"] <= 1280  # readable on a laptop screen: no horizontal scrolling


def test_report_screenshot_is_kept(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    result = _run([f"--screenshot={shot}", "--window-size=1280,2400", REPORT.as_uri()], tmp_path / "profile")
    assert shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
