"""A real browser on the real server: headless Debian Chromium, driven by Playwright, opens a
shopper's page; every section and every product link is visible, the console stays clean,
and a screenshot is kept (the test's tmp folder and `test-output/browser/`, git-ignored)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import REPO, BuiltShop
from test_api import ADMIN_KEY
from test_api_server import AUTH, Server, running_server

from composer.bench.api import run_html_stream

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = REPO / "test-output" / "browser"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian Chromium is missing at {CHROMIUM}; install it with "
            "`apt-get update && apt-get install -y chromium` (the browser test needs it)",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def server(ml_shop: BuiltShop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_chromium()  # before spending seconds on a server
    with running_server(ml_shop.settings.artifacts_dir, tmp_path_factory.mktemp("server")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.mark.parametrize(
    ("shopper", "query"),
    [("196", {}), ("42", {"kind": "search", "q": "space adventure", "locale": "zh"})],
    ids=["home-en", "search-zh"],
)
def test_page_in_headless_chromium(
    server: Server, browser: Browser, tmp_path: Path, shopper: str, query: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    # What the page should show, from the JSON API for the same request.
    body = {"shopper_id": shopper, "format": "html", "kind": query.get("kind", "home")}
    if "q" in query:
        body["query"] = query["q"]
    if "locale" in query:
        body["locale"] = query["locale"]
    answer = httpx.post(f"{server.url}/v1/pages", json=body, headers=AUTH, timeout=60)
    layout = answer.json()["layout"]
    expected_sections = len(layout["sections"])
    expected_links = sum(len(s["slots"]) for s in layout["sections"])

    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        watch(page, problems, console=("error", "warning"), http_errors=True)
        # The storefront mints a signed link for its shopper; the raw id opens nothing.
        url = httpx.URL(server.page_link(shopper)).copy_merge_params(query)
        response = page.goto(str(url), wait_until="load")
        assert response is not None and response.status == 200
        assert response.headers["x-request-id"]

        expect(page.locator("h1.page__title")).to_be_visible()
        sections = page.locator("main section.section")
        assert sections.count() == expected_sections >= 1
        for i in range(sections.count()):
            section = sections.nth(i)
            section.scroll_into_view_if_needed()
            expect(section).to_be_visible()
            expect(section.locator("h2.section__headline")).to_be_visible()
            expect(section.locator("h2.section__headline")).not_to_be_empty()

        links = page.locator("main a.card__link")
        assert links.count() == expected_links
        for i in range(links.count()):
            link = links.nth(i)
            link.scroll_into_view_if_needed()
            expect(link).to_be_visible()
            assert (link.get_attribute("href") or "").startswith("/products/")
            box = link.bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0

        if query.get("locale") == "zh":
            assert page.locator("html").get_attribute("lang") == "zh-Hans"

        page.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / f"page-{shopper}.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()

    assert not problems, problems
    assert shot.stat().st_size > 10_000
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, OUTPUT / f"page-{shopper}-{query.get('locale', 'en')}.png")


def test_product_link_opens_its_page_and_leads_back(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        watch(page, problems, console=("error",))
        start = server.page_link("196") + "&locale=zh"
        assert page.goto(start, wait_until="load").status == 200  # type: ignore[union-attr]

        link = page.locator("main a.card__link").nth(1)
        title = link.locator(".card__title").inner_text()
        href = link.get_attribute("href") or ""
        link.scroll_into_view_if_needed()
        link.click()
        page.wait_for_url(f"{server.url}{href}")
        expect(page.locator("h1.product__title")).to_have_text(title)
        expect(page.locator(".product__price")).to_contain_text("US$")  # the zh page's locale
        assert page.locator("html").get_attribute("lang") == "zh-Hans"
        shot = tmp_path / "product.png"
        page.screenshot(path=str(shot), full_page=True)

        back = page.locator("a.product__back")
        expect(back).to_be_visible()
        back.click()
        page.wait_for_url(start)
        expect(page.locator("main section.section").first).to_be_visible()
        assert not problems, problems

        # An unknown product is a readable 404 page, not a JSON body.
        response = page.goto(f"{server.url}/products/no-such-product", wait_until="load")
        assert response is not None and response.status == 404
        expect(page.locator("h1.page__title")).to_be_visible()
        expect(page.locator(".not-found__detail")).to_contain_text("no-such-product")
    finally:
        context.close()

    assert shot.stat().st_size > 5_000
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, OUTPUT / "product-zh.png")


def watch(
    page: Page, problems: list[str], console: tuple[str, ...], http_errors: bool = False
) -> None:
    """Collect into ``problems`` the page's console messages of the ``console`` types, its
    uncaught errors and, with ``http_errors``, every response of status 400 or above."""
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in console else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    if http_errors:
        page.on(
            "response",
            lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None,
        )


@pytest.fixture(scope="module")
def llm_server(ml_shop: BuiltShop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server with the real in-process model: pages composed on request."""
    require_chromium()
    folder = tmp_path_factory.mktemp("llm-server")
    with running_server(
        ml_shop.settings.artifacts_dir, folder, COMPOSER_LLM_BACKEND="transformers"
    ) as s:
        yield s


def test_a_page_composed_on_request_streams_head_then_sections_then_title(
    llm_server: Server, browser: Browser
) -> None:
    from playwright.sync_api import expect

    url = httpx.URL(llm_server.page_link("196")).copy_merge_params(
        {"kind": "search", "q": "space adventure"}
    )
    chunks: list[str] = []
    with httpx.stream("GET", url, timeout=120) as r:
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        page_id = r.headers["x-page-id"]
        chunks = list(r.iter_text())
    # Over HTTP, the head came apart from the end: it was sent before the model had
    # finished (the document's title is the shop's, the page's own comes last).
    assert len(chunks) >= 3, chunks
    assert chunks[0].startswith("<!DOCTYPE html>") and "</html>" not in chunks[0]
    document = "".join(chunks)
    assert document.index('class="section') < document.index('<h1 class="page__title">')
    assert document.rstrip().endswith("</html>")
    logged = [json.loads(line) for line in llm_server.log_lines() if page_id in line]
    page_log = next(entry for entry in logged if entry.get("msg") == "page")
    assert page_log["backend"] == "transformers" and page_log["fallback"] is False, page_log

    # A browser shows the title on top although it arrived last.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        watch(page, problems, console=("error", "warning"), http_errors=True)
        response = page.goto(llm_server.page_link("196"), wait_until="load", timeout=120_000)
        assert response is not None and response.status == 200
        title = page.locator("h1.page__title")
        expect(title).to_be_visible()
        first = page.locator("main section.section").first
        expect(first).to_be_visible()
        title_box, section_box = title.bounding_box(), first.bounding_box()
        assert title_box is not None and section_box is not None
        assert title_box["y"] < section_box["y"]
    finally:
        context.close()
    assert not problems, problems


def test_the_html_stream_benchmark_sees_the_first_section_before_the_end(
    llm_server: Server,
) -> None:
    report = run_html_stream(llm_server.url, ADMIN_KEY, ["186", "187"], 2)
    assert report["pages"] == report["chunked"] == 2
    assert report["head_ms_p50"] <= report["first_section_ms_p50"] <= report["complete_ms_p50"]
    assert 0 < report["first_section_over_complete"] <= 1
