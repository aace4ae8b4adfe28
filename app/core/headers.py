"""The response headers of CONTRACT.md section 5 that do not depend on the request."""

from typing import Final

Header = tuple[bytes, bytes]

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
# The docs pages take scripts, styles, images and API calls from Keel alone (no inline script, no
# CDN, no fonts); both UIs draw icons as data: SVGs. Swagger UI (/docs, its assets) styles
# elements through the CSSOM, which style-src does not govern: it needs no inline style.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# ReDoc (/redoc) writes <style> elements (styled-components) and runs its search in a blob:
# worker: those two on top of the Swagger UI policy, nothing more. Checked in a real browser by
# tests/browser/test_docs_page.py.
REDOC_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PERMISSIONS_POLICY: Final = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
NO_STORE: Final = (b"cache-control", b"no-store")
VARY_ORIGIN: Final = (b"vary", b"Origin")


def security_headers(csp: str, hsts_seconds: int) -> list[Header]:
    """The headers of CONTRACT.md section 5 that do not depend on the request."""
    headers = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": csp,
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": PERMISSIONS_POLICY,
        "x-xss-protection": "0",  # OWASP: the old XSS auditor's `1; mode=block` can cause XSS
    }
    if hsts_seconds > 0:
        headers["strict-transport-security"] = f"max-age={hsts_seconds}; includeSubDomains"
    return [(name.encode(), value.encode()) for name, value in headers.items()]


# Names the edge sets; an answer that already carries one of them keeps its own value.
MANAGED: Final = frozenset(
    [name for name, _ in security_headers("", 1)] + [b"server", b"cache-control"]
)


def csp_for(path: str) -> str:
    """The Content-Security-Policy of a page: the docs UIs need more than the API's `'none'`."""
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_CSP
    if path == "/redoc":
        return REDOC_CSP
    return API_CSP
