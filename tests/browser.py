"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for the web page tests.

Never `playwright install`: the browser is the system one (`make browser` installs it). Tests that
need it skip with the reason when Playwright or Chromium is missing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium")
# Software WebGL (SwiftShader): no GPU in CI; the rest keeps the browser off the network.
ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]
# The README's pictures: rewritten only when asked (RECON_SCREENSHOTS=1 pytest tests/test_viewer.py
# tests/test_serve.py), so a test run leaves the tracked files alone; otherwise they go to a temp folder.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make browser installs Debian's)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


def open_page(browser, url: str, offline: bool):
    """A page at `url`, its console errors collected in page.errors; offline: every non-file request fails
    (and is recorded in page.blocked) so the page proves it needs no network."""
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.errors, page.blocked = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    if offline:
        def block(route):
            page.blocked.append(route.request.url)
            route.abort()

        page.route(lambda url: not url.startswith(("file:", "data:", "blob:")), block)
    page.goto(url)
    return page


def canvas_pixels(page, name: str | None = None) -> np.ndarray:
    """Wait for the 3D view to have drawn a mesh; screenshot the whole page as <name>.png (into
    docs/screenshots with RECON_SCREENSHOTS=1); return the canvas pixels (H, W, 3) uint8."""
    import tempfile

    from PIL import Image

    page.wait_for_selector("canvas.recon-canvas[data-loaded=true]", timeout=60_000)
    page.wait_for_timeout(300)  # one more frame
    if name:
        folder = SCREENSHOTS if os.environ.get("RECON_SCREENSHOTS") == "1" else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    canvas = page.locator("canvas.recon-canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(canvas)).convert("RGB"))


def object_pixels(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) pixels of the canvas that are not its flat background (the corner's colour)."""
    background = pixels[2, 2].astype(int)
    far = np.abs(pixels.astype(int) - background).sum(axis=2) > 30
    return pixels[far].astype(float)


def chromaticity(colors: np.ndarray) -> np.ndarray:
    """Mean r, g, b shares (brightness removed: the viewer's lighting scales colours, keeps their hue)."""
    colors = np.asarray(colors, float).reshape(-1, 3)
    return (colors / np.maximum(colors.sum(axis=1, keepdims=True), 1.0)).mean(axis=0)
