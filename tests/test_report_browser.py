"""report/index.html in a real browser (headless Chromium through Playwright), opened from disk (file://)
and served over http from the report folder alone (relative links must work there too): every image and
plot loads, every local link resolves, no request fails, no console error; a full-page screenshot for a
look. Two reports: a real smoke sweep (real images, base images in the shared cache outside the sweep) and
the synthetic sweep of test_report (SHAP beeswarms, a failed run).

Without Chromium these tests skip, saying how to get it (`make browser`: Debian's package, through sudo
unless root); with LYCOBENCH_REQUIRE_BROWSER=1 (CI's .ci/run, which installs it) they fail instead."""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image, ImageStat

CHROMIUM = Path(os.environ.get("LYCOBENCH_CHROMIUM", "/usr/bin/chromium"))
# the closed network refuses Chromium's background connections: switch them off
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium with a fresh profile (a persistent context: Playwright takes the profile folder
    as user_data_dir, not as a --user-data-dir argument)."""
    if not CHROMIUM.is_file():
        why = (
            f"Chromium not found at {CHROMIUM}: run `make browser` (installs Debian's chromium, through sudo "
            "unless root), or point LYCOBENCH_CHROMIUM at a Chromium binary"
        )
        if os.environ.get("LYCOBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `pip install -e '.[dev]'`", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="lycobench-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture(scope="session")
def smoke(local_smoke):
    """The report of conftest's smoke sweep (run once per session, to the end, through the CLI; the report
    is written last). Only read here: the screenshots go to tmp_path."""
    return local_smoke / "report"


@pytest.fixture(scope="session")
def synthetic(built):
    return built[1]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of an http server on a free localhost port serving that folder only."""
    servers = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


SHOWN = "i => i.getClientRects().length > 0"  # an image the page displays (not a hidden seed's sheet)


def _load(page, url: str) -> None:
    page.goto(url, wait_until="load")
    imgs = page.locator("img:visible")
    for i in range(imgs.count()):  # the figures load lazily: bring each into view, as a reader would
        imgs.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        f"() => [...document.images].filter({SHOWN}).every(i => i.complete)", timeout=60_000
    )
    page.evaluate("window.scrollTo(0, 0)")


def _pick_every_seed(page) -> tuple[int, list[str]]:
    """Click every seed of every grid's selector, as a reader would: exactly the picked seed's sheet is shown
    and loads. Returns (seeds picked, the problems found)."""
    problems = []
    radios = page.locator(".seeds > input[type=radio]")
    for i in range(radios.count()):
        radio = radios.nth(i)
        rid = radio.get_attribute("id")
        page.locator(f"label[for='{rid}']").click()
        figure = radio.locator("xpath=ancestor::figure[1]")
        shown = figure.locator("a.sheet:visible img")
        if shown.count() != 1:
            problems.append(f"{rid}: {shown.count()} sheets shown")
            continue
        shown.scroll_into_view_if_needed()
        page.wait_for_function("i => i.complete", arg=shown.element_handle(), timeout=30_000)
        src, width = shown.get_attribute("src"), shown.evaluate("i => i.naturalWidth")
        if not src.endswith(f"seed-{rid.rsplit('-', 1)[1]}.png") or width == 0:
            problems.append(f"{rid}: shows {src} (natural width {width})")
    return radios.count(), problems


@pytest.mark.parametrize("how", ["file", "http"])
@pytest.mark.parametrize("which", ["smoke", "synthetic"])
def test_every_image_and_link_loads_in_chromium(browser, which, how, request, serve, tmp_path):
    report = request.getfixturevalue(which)
    base = report.resolve().as_uri() + "/" if how == "file" else serve(report)
    page = browser.new_page()
    failed, errors = [], []
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url}: HTTP {r.status}"))
    page.on("console", lambda m: m.type == "error" and errors.append(f"{m.text} ({m.location['url']})"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        _load(page, base + "index.html")
        picked, seeds = _pick_every_seed(page)
        images = page.evaluate(
            "() => [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight])"
        )
        links = page.evaluate(
            "() => [...document.querySelectorAll('a[href]')].map(a => [a.getAttribute('href'), a.href])"
        )
        shot = tmp_path / f"report-{which}-{how}.png"
        page.screenshot(path=str(shot), full_page=True)
        # every local link: a fragment names an element on the page, a file exists or is served
        broken = []
        for href, absolute in sorted(set(map(tuple, links))):
            if href.startswith("#"):
                if not page.evaluate("id => !!document.getElementById(id)", href[1:]):
                    broken.append(href)
                continue
            assert absolute.startswith(base), f"link leaves the report folder: {href}"
            if how == "file":
                ok = Path(unquote(urlsplit(absolute).path)).is_file()
            else:
                ok = page.request.get(absolute).ok
            if not ok:
                broken.append(href)
    finally:
        page.close()
    assert images, "no image on the page"
    assert picked > 0 and seeds == [], "seed selectors"
    assert [src for src, w, h in images if not (w > 0 and h > 0)] == [], "images that did not load"
    assert broken == [], "broken links"
    assert failed == [], "failed requests"
    assert errors == [], "console errors"
    # the screenshot shows something: a real PNG, not tiny, not one flat colour
    assert shot.stat().st_size > 10_000, shot
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.width >= 1000 and im.height > 900
        assert ImageStat.Stat(im.convert("L")).stddev[0] > 5, "the screenshot is a flat colour"
