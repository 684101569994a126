"""``/docs`` in real Chromium with every request off this server refused: Swagger UI must come
from the files the ``fastapi-offline`` package ships and render the operations of ``/openapi.json``
(FastAPI's default page loads its script from a CDN and stays blank offline; the
``swagger-ui-bundle`` package's Swagger UI 4 showed "Unable to render this definition")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.browser import browser, save_screenshot
from tests.integration.server import LiveServer

__all__ = ["browser"]  # the fixture, imported for this module's tests


def test_swagger_ui_renders_with_no_internet(browser: Any, tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data")
    server.start()
    try:
        context = browser.new_context()
        elsewhere: list[str] = []

        def only_this_server(route: Any) -> None:
            # Stands in for a machine with no internet: anything off this origin fails.
            if route.request.url.startswith(server.base + "/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", only_this_server)
        page = context.new_page()
        page.goto(server.base + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        save_screenshot(page, "swagger-offline", full_page=False)
        context.close()
    finally:
        server.stop()
    assert elsewhere == []
    assert "/v1/scan" in operations and "/m/lookup" in operations
