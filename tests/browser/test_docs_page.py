"""The page people actually open: /docs and /redoc in headless Chromium, against the real server.

Swagger UI must render, authorize through the OAuth2 password flow (a real call to the token
endpoint), run GET /api/v1/items with the bearer token and show the 200; ReDoc must render. On
both pages: no console error, no CSP violation, no request to any host but the server.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, sync_playwright

from tests.browser.conftest import chromium_args

EMAIL = "browser-user@example.com"
PASSWORD = "a-long-browser-password-42"
TIMEOUT_MS = 30_000

# Every CSP violation the document sees, recorded before any page script runs.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} ` +
    `(${event.sourceFile || "?"}:${event.lineNumber}) ${event.sample || ""}`.trim()
  );
});
"""


@dataclass
class PageWatch:
    """What a page did besides rendering: console errors, CSP violations, every request."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    csp_messages: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("requestfailed", self._on_failed)

    def _on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp_messages.append(message.text)
        if message.type == "error":
            self.console_errors.append(f"{message.text} at {message.location}")

    def _on_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but the server (data: URLs go nowhere; blob: must be ours)."""
        foreign = []
        for url in self.requests:
            if url.startswith("data:"):
                continue
            inner = url.removeprefix("blob:")
            parts = urlsplit(inner)
            if f"{parts.scheme}://{parts.netloc}" != self.origin:
                foreign.append(url)
        return foreign

    def assert_clean(self, page: Page) -> None:
        violations = page.evaluate("window.__cspViolations")
        assert violations == []
        assert self.csp_messages == []
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.failed == []
        assert self.foreign_requests() == []
        assert self.requests  # the watch really saw the page's traffic


@pytest.fixture(scope="module")
def browser_context(
    chromium_path: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile, no service worker, no outside traffic."""
    user_data_dir = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir,
            executable_path=chromium_path,
            headless=True,
            args=chromium_args(),
            viewport={"width": 1280, "height": 900},
            service_workers="block",
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(CSP_LISTENER)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def registered_user(live_server: str) -> tuple[str, str]:
    response = httpx.post(
        f"{live_server}/api/v1/auth/register",
        json={"email": EMAIL, "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return EMAIL, PASSWORD


def test_swagger_ui_authorizes_and_lists_items(
    live_server: str,
    browser_context: BrowserContext,
    registered_user: tuple[str, str],
    artifacts_dir: Path,
) -> None:
    email, password = registered_user
    page = browser_context.new_page()
    watch = PageWatch(origin=live_server)
    watch.attach(page)

    # 1. Swagger UI renders the operations from the OpenAPI document.
    page.goto(f"{live_server}/docs")
    list_items = page.locator("#operations-items-list_items")
    list_items.wait_for()
    assert page.locator(".opblock").count() >= 10

    # 2. Authorize through the OAuth2 password flow: a real call to the token endpoint.
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.wait_for()
    dialog.locator("#oauth_username").fill(email)
    dialog.locator("#oauth_password").fill(password)
    with page.expect_response(lambda r: r.request.method == "POST") as token_info:
        dialog.locator("button.modal-btn.authorize").click()
    token_response = token_info.value
    assert token_response.url == f"{live_server}/api/v1/auth/token"
    assert token_response.status == 200
    access_token = token_response.json()["access_token"]
    dialog.locator("button", has_text="Logout").wait_for()  # Swagger UI took the token
    assert dialog.locator("h6", has_text="Authorized").count() == 1
    assert "/api/v1/auth/token" in dialog.inner_text()  # the Token URL it shows
    dialog.locator("button.btn-done").click()
    dialog.wait_for(state="detached")

    # 3. GET /api/v1/items from the page, with the bearer token, and the 200 rendered.
    list_items.locator(".opblock-summary").click()
    list_items.locator("button.try-out__btn").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/items") as items_info:
        list_items.locator("button.execute").click()
    items_response = items_info.value
    assert items_response.status == 200
    assert items_response.request.headers["authorization"] == f"Bearer {access_token}"
    expected = {"items": [], "total": 0, "limit": 20, "offset": 0, "next_cursor": None}
    assert items_response.json() == expected
    live_status = list_items.locator(".live-responses-table .response .response-col_status")
    live_status.first.wait_for()
    assert live_status.first.inner_text().strip() == "200"
    assert '"total": 0' in list_items.locator(".live-responses-table").inner_text()

    # 5. Screenshots a reviewer can open: the executed call in view, and the whole page.
    list_items.locator(".live-responses-table").evaluate("node => node.scrollIntoView()")
    page.mouse.wheel(0, -330)  # the curl command with its bearer token above the 200 too
    screenshot = artifacts_dir / "docs-page.png"
    page.screenshot(path=screenshot)
    page.screenshot(path=artifacts_dir / "docs-page-full.png", full_page=True)
    print(f"docs page screenshot: {screenshot}")

    # 4. Nothing went wrong on the way.
    watch.assert_clean(page)
    page.close()


def test_redoc_renders(
    live_server: str, browser_context: BrowserContext, artifacts_dir: Path
) -> None:
    page = browser_context.new_page()
    watch = PageWatch(origin=live_server)
    watch.attach(page)

    page.goto(f"{live_server}/redoc")
    page.locator(".api-info h1").wait_for()
    assert "Keel" in page.locator(".api-info h1").inner_text()
    page.locator("[data-section-id='operation/list_items']").wait_for()
    # The search runs in a blob: worker (REDOC_CSP's worker-src): it must find the operation.
    page.locator("input.search-input").fill("List Items")
    results = page.locator("[data-role='search:results']")
    results.wait_for()
    assert "List Items" in results.inner_text()
    page.wait_for_load_state("networkidle")

    screenshot = artifacts_dir / "redoc-page.png"
    page.screenshot(path=screenshot)
    print(f"redoc page screenshot: {screenshot}")

    watch.assert_clean(page)
    page.close()
