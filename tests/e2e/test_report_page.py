"""report.html of the tiny study (conftest's ``made``) in a real headless browser: every image
loads and shows at its real size, every contents link reaches a visible section, nothing runs off
the page sideways, and a screenshot of the whole page is the right size, not blank, with the
warnings box at the top.

The browser is headless Chromium (``chromium-headless-shell``, ``chromium`` or Chrome, or the one
named by ``$REPMET_BROWSER``); nothing is fetched from the network at test time. Without a browser
the test is skipped, saying how to install one.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = (
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
WIDTH = 1400
#: The measurements the page makes of itself once loaded, written into the DOM that
#: ``--dump-dom`` prints. Added to a copy of the page only: report.html runs no script.
PROBE = """
<script>
window.addEventListener("load", () => {
  const box = (element) => element.getBoundingClientRect();
  const images = [...document.images];
  const found = {
    images: images.map((i) => i.getAttribute("src")),
    broken: images.filter((i) => !i.complete || i.naturalWidth === 0)
                  .map((i) => i.getAttribute("src")),
    resized: images.filter((i) => i.naturalWidth > 0 && Math.abs(box(i).width - i.naturalWidth) > 1)
                   .map((i) => [i.getAttribute("src"), i.naturalWidth, box(i).width]),
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    links: [...document.querySelectorAll("nav.contents a")].map((a) => a.getAttribute("href")),
    sections: [...document.querySelectorAll("section")].map((s) => s.id),
    warnings: [...document.querySelectorAll(".warnings li")].map((li) => li.textContent),
    warningsTop: document.querySelector(".warnings") ? box(document.querySelector(".warnings")).top
                                                     : null,
    height: document.documentElement.scrollHeight,
  };
  found.dead = found.links.filter((href) => {
    const target = document.getElementById(href.slice(1));
    return !target || box(target).height === 0;
  });
  const out = document.createElement("pre");
  out.id = "page-probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>
"""


def _browser() -> str | None:
    named = os.environ.get("REPMET_BROWSER")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


BROWSER = _browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless Chromium on PATH (apt-get install chromium-headless-shell, or chromium; "
    "or set REPMET_BROWSER to a Chrome/Chromium binary)",
)


def _chromium(profile: Path, *arguments: str, height: int) -> subprocess.CompletedProcess[str]:
    command = [
        str(BROWSER),
        "--headless",
        "--no-sandbox",  # containers run as root, where the sandbox cannot start
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{height}",
        "--virtual-time-budget=10000",  # until every image has loaded
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _probe(page: Path, profile: Path) -> dict:
    """Loads a copy of the page with the probe script beside the original (same image folder)
    and returns what the probe measured."""
    probed = page.with_name("probed-report.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        done = _chromium(profile, "--dump-dom", probed.as_uri(), height=1000)
    finally:
        probed.unlink()
    match = re.search(r'<pre id="page-probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the page did not finish loading in the browser: {done.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def test_report_page_renders_in_a_headless_browser(made, tmp_path) -> None:
    report, out = made
    page = out / "report.html"
    found = _probe(page, tmp_path / "profile")

    pngs = {p.name for p in out.glob("*.png")}
    assert set(found["images"]) == pngs and len(pngs) >= 8, found["images"]
    assert "loss_comparison.png" in found["images"]
    assert found["broken"] == [], "images that did not load"
    assert found["resized"] == [], "images not shown at their real size (too wide for the page?)"
    assert found["overflow"] <= 0, "the page scrolls sideways"
    assert found["dead"] == [], "contents links without a visible target"
    assert {"results", "settings", "hyperparameters", "trials", "figures"} <= set(found["sections"])
    assert found["sections"][0] == "warnings" and found["sections"][1] == "results"
    assert len(found["links"]) >= 10
    # the tiny study is a --smoke study: the page says so, above everything else
    assert any(w.startswith("Smoke-sized study") for w in found["warnings"])
    assert found["warnings"] == report.warnings
    assert found["warningsTop"] is not None and found["warningsTop"] < 200

    import numpy as np
    from PIL import Image

    height = min(int(found["height"]), 16000)
    shot = tmp_path / "report.png"
    done = _chromium(tmp_path / "profile", f"--screenshot={shot}", page.as_uri(), height=height)
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (WIDTH, height)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    inked = (pixels.sum(axis=2) < 600).mean()
    assert inked > 0.02, f"the screenshot is almost blank ({inked:.1%} inked)"
    top = pixels[:400]
    red = ((top[..., 0] > 150) & (top[..., 1] < 90) & (top[..., 2] < 90)).sum()
    assert red > 300, "no red warnings box at the top of the screenshot"
