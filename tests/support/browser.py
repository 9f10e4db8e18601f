"""What the browser tests share: Debian's chromium driven by Playwright, its flags,
the two screens, and the page checks every page must pass."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What a root CI machine with no network needs: no sandbox, no background traffic.
# PaintHolding drops input that arrives before a page's first paint, which comes late
# on a loaded machine: a key pressed then never reaches the page.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-features=PaintHolding",
]  # fmt: skip
SCREENS = {
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}
LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1" / "legacy"  # format 1
WAIT_MS = 60_000  # a safety net: every wait ends as soon as the page shows its state

# Images the reader would see broken or as bare alt text: drawn, yet without a source
# or without pixels.
BAD_IMAGES = """() => [...document.images].filter((img) => {
  const drawn = getComputedStyle(img).display !== "none" && img.getClientRects().length > 0;
  const empty = !img.getAttribute("src") || (img.complete && img.naturalWidth === 0);
  return drawn && empty;
}).map((img) => img.id || img.alt)"""
# How far the page reaches past the screen's width. On a phone (is_mobile) Chromium
# widens innerWidth to the content, as phones do; clientWidth stays the screen's.
OVERFLOW = """() => document.documentElement.scrollWidth
  - Math.min(window.innerWidth, document.documentElement.clientWidth)"""


def playwright() -> ModuleType:
    """Playwright's sync API; skips the calling test module when it or chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "chromium is not installed (apt-get install chromium; make test does it where it can)",
            allow_module_level=True,
        )
    return sync_api


# Wide things (tables, plots, code) that reach past their card without a box that
# scrolls sideways inside it (overflow-x auto or scroll): cut, with no way to see the rest.
# On the served pages the box also says it scrolls (data-overflow, a hint under it).
CUT = """(served) => [...document.querySelectorAll("table, img, pre, svg")].flatMap((el) => {
  if (!el.getClientRects().length) return [];
  const card = el.closest(".card") || document.body;
  const box = card.getBoundingClientRect();
  const own = el.getBoundingClientRect();
  if (own.right <= box.right + 1 && own.left >= box.left - 1) return [];
  let scroller = el.parentElement;
  const scrolls = (box) => ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
  while (scroller && scroller !== card && !scrolls(scroller)) {
    scroller = scroller.parentElement;
  }
  const name = el.id || el.tagName.toLowerCase();
  if (!scroller || scroller === card) return [name + ": cut, in no scrolling box"];
  if (scroller.getBoundingClientRect().right > box.right + 1) return [name + ": its box is cut"];
  if (!served) return [];
  const hint = scroller.nextElementSibling;
  const said = scroller.dataset.overflow === "true" && hint && hint.checkVisibility();
  return said ? [] : [name + ": scrolls without saying so"];
})"""
# Whether the page is as wide as the screen: document.scrollingElement and OVERFLOW.
SCROLL_WIDTH = "() => document.scrollingElement.scrollWidth - window.innerWidth"


@contextmanager
def screen_page(sync_api: ModuleType, screen: str) -> Iterator[Any]:
    """A page of a fresh Chromium on ``screen`` (one of SCREENS), with the waits of
    every browser test; the browser is closed after."""
    sync_api.expect.set_options(timeout=WAIT_MS)
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            # bypass_csp: Playwright's waits evaluate scripts, which the pages' policy forbids
            page = browser.new_context(**SCREENS[screen], bypass_csp=True).new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()
