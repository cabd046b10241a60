"""The API docs as a person sees them: /docs (Swagger UI) and /redoc (ReDoc) opened in headless
Chromium, from the app served by uvicorn as `make api` serves it, with no network but loopback.

tests/api/test_openapi_and_inputs.py checks that the pages' scripts and stylesheets are served by
the API; this checks that a browser renders the pages from them, with every request it makes going
to the API. No Temporal is needed: /health degrades, the docs do not.

It drives Debian's Chromium (`make test` installs it): where /usr/bin/chromium is missing the tests
skip, and under CI=true they fail instead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from disputeflow.settings import Settings
from disputeflow.stack import child_environment
from tests.conftest import IN_CI, free_port

try:
    from playwright.async_api import Browser, Page, Route, async_playwright, expect
except ImportError:  # the test extra is not installed: the `chromium` fixture says so
    async_playwright = None

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DISPUTEFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless, as root, and quiet: without the background-networking switches Chromium keeps
# calling home, which a machine without internet refuses.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT_SECONDS = 30
RENDER_TIMEOUT_MS = 20_000
# ReDoc's sidebar footer ("API docs by Redocly") always asks Redocly's CDN for this logo and hides
# the image when that fails. The docs pages' Content-Security-Policy (api/docs_policy.py) stops the
# browser from asking at all: the console reports that refusal, and no request leaves.
REDOC_ATTRIBUTION_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

# Swagger UI: (tag, method, path) of every operation block, under the tag section it is shown in.
SWAGGER_OPERATIONS_JS = """() => [...document.querySelectorAll('.opblock-tag-section')].flatMap(section => {
    const tag = section.querySelector('h3.opblock-tag').dataset.tag;
    return [...section.querySelectorAll('.opblock')].map(op => [
        tag,
        op.querySelector('.opblock-summary-method').textContent.toLowerCase(),
        op.querySelector('.opblock-summary-path').dataset.path,
    ]);
})"""


@dataclass
class ServedApi:
    origin: str
    spec: dict[str, Any]

    def operations(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(tag, method, path, operation) for each operation under each of its tags."""
        return [(tag, method, path, operation) for path, item in self.spec["paths"].items()
                for method, operation in item.items() for tag in operation.get("tags", [])]


@dataclass
class PageLog:
    """Everything a page asked for and everything that went wrong on it."""

    origin: str
    requests: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, why)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (url it concerns, message)
    left: list[str] = field(default_factory=list)  # requests that reached the network for elsewhere

    def is_local(self, url: str) -> bool:
        return url.startswith((f"{self.origin}/", f"blob:{self.origin}/", "data:"))

    def assert_offline(self, refused_by_policy: frozenset[str] = frozenset()) -> None:
        """No request went anywhere but the API, none failed, and the console holds no error;
        except that the page's Content-Security-Policy blocked, inside the browser, exactly the
        URLs in `refused_by_policy` (and the console says so)."""
        assert self.requests, "the page made no request at all"
        assert not self.left, f"requests that tried to leave {self.origin}: {self.left}"
        blocked = {url for url, why in self.failed if why == "csp"}
        assert blocked == refused_by_policy, f"blocked by the page's policy: {blocked}"
        foreign = [url for url in self.requests if not self.is_local(url) and url not in blocked]
        assert not foreign, f"requests that left {self.origin}: {foreign}"
        failed = [(url, why) for url, why in self.failed if url not in blocked]
        assert not failed, f"failed requests: {failed}"
        errors = [message for _, message in self.errors
                  if not any(url in message and "Content Security Policy" in message for url in blocked)]
        assert not errors, f"errors on the page: {errors}"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (and playwright to drive it); in CI their absence fails instead of skipping."""
    problem = None
    if async_playwright is None:
        problem = "playwright is not installed (the test extra: `make test` installs it)"
    elif not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} not found (`make test` installs Debian's chromium as root)"
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(f"{problem}; set CI=true to make this a failure")
    return CHROMIUM


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    """`uvicorn api.app:app` on a free port of 127.0.0.1, pointed at a Temporal that is not there."""
    data_dir = tmp_path_factory.mktemp("docs-browser")
    port = free_port()
    settings = Settings(_env_file=None, data_dir=data_dir, temporal_address=f"127.0.0.1:{free_port()}",
                        api_port=port, api_metrics_port=0)
    log = data_dir / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT, env=child_environment(settings), stdout=out, stderr=subprocess.STDOUT,
        )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                spec = httpx.get(f"{origin}/openapi.json", timeout=2).raise_for_status().json()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the API did not start on {origin}:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
        yield ServedApi(origin, spec)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def opened(browser: Browser, api: ServedApi, path: str) -> AsyncIterator[tuple[Page, PageLog]]:
    """The page at `path`, with a log of its requests and errors. As on a machine without internet,
    whatever this one has, every request to anywhere but the API is refused."""
    log = PageLog(api.origin)
    context = await browser.new_context()
    try:
        async def refuse(route: Route) -> None:
            log.left.append(route.request.url)
            await route.abort("internetdisconnected")

        await context.route(lambda url: url.startswith(("http:", "https:")) and not log.is_local(url), refuse)
        page = await context.new_page()
        page.set_default_timeout(RENDER_TIMEOUT_MS)
        page.on("request", lambda request: log.requests.append(request.url))
        page.on("requestfailed", lambda request: log.failed.append((request.url, str(request.failure))))
        page.on("response", lambda response: response.status >= 400 and log.failed.append(
            (response.url, f"HTTP {response.status}")))
        page.on("console", lambda message: message.type == "error" and log.errors.append(
            (message.location.get("url", ""), message.text)))
        page.on("pageerror", lambda error: log.errors.append(("", f"uncaught {error}")))
        response = await page.goto(f"{api.origin}{path}")
        assert response is not None and response.status == 200
        yield page, log
        await page.wait_for_load_state("networkidle")  # every request the page makes, logged
    finally:
        await context.close()


async def test_swagger_ui_renders_offline(browser: Browser, served_api: ServedApi) -> None:
    async with opened(browser, served_api, "/docs") as (page, log):
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            served_api.spec["info"]["title"], timeout=RENDER_TIMEOUT_MS)

        # Every operation, under each of its tags; the declared tags first, in their order.
        expected = sorted((tag, method, path) for tag, method, path, _ in served_api.operations())
        assert sorted(tuple(op) for op in await page.evaluate(SWAGGER_OPERATIONS_JS)) == expected
        sections = await page.locator("h3.opblock-tag").evaluate_all("tags => tags.map(t => t.dataset.tag)")
        declared = [tag["name"] for tag in served_api.spec["tags"]]
        assert sections[:len(declared)] == declared and set(sections) == {tag for tag, *_ in expected}

        # POST /cases opens, with its example call.
        intake = served_api.spec["paths"]["/cases"]["post"]
        post_cases = page.locator(f'[id="operations-intake-{intake["operationId"]}"]')
        await expect(post_cases.locator(".opblock-summary-path")).to_have_attribute("data-path", "/cases")
        await expect(post_cases.locator(".opblock-summary-method")).to_have_text("POST")
        await expect(post_cases.locator(".opblock-summary-description")).to_have_text(intake["summary"])
        await post_cases.locator(".opblock-summary-control").click()
        await expect(post_cases.locator(".opblock-body")).to_contain_text("工地拖欠")

        # Authorize opens the dialog for the bearer token.
        authorize = page.locator("button.authorize")
        await expect(authorize).to_have_text("Authorize")
        await authorize.click()
        dialog = page.locator(".dialog-ux .modal-ux")
        await expect(dialog).to_be_visible()
        await expect(dialog).to_contain_text("HTTPBearer")
        await expect(dialog.locator("input")).to_have_count(1)
    log.assert_offline()


async def test_redoc_renders_offline(browser: Browser, served_api: ServedApi) -> None:
    async with opened(browser, served_api, "/redoc") as (page, log):
        info = served_api.spec["info"]
        await expect(page.locator("h1")).to_have_text(f"{info['title']} ({info['version']})",
                                                      timeout=RENDER_TIMEOUT_MS)

        # The menu lists every tag and, under each, every one of its operations.
        menu = await page.locator("li[data-item-id]").evaluate_all("items => items.map(i => i.dataset.itemId)")
        operations = served_api.operations()
        expected = {f"tag/{tag}" for tag, *_ in operations} | {
            f"tag/{tag}/operation/{operation['operationId']}" for tag, _, _, operation in operations}
        assert sorted(menu) == sorted(expected)

        # POST /cases is rendered in full: title, request body and the example in the right panel.
        intake = served_api.spec["paths"]["/cases"]["post"]
        section = page.locator(f'[data-section-id="tag/intake/operation/{intake["operationId"]}"]')
        await expect(section.locator("h2")).to_have_text(intake["summary"])
        await expect(section).to_contain_text("Request Body schema: application/json")
        await expect(section).to_contain_text("/cases")
        await expect(section).to_contain_text("工地拖欠")
    log.assert_offline(refused_by_policy=frozenset({REDOC_ATTRIBUTION_LOGO}))
