"""The transparency report end to end: the real ``dignity report`` command on a real database,
the routes on a live server, and the page in real Chromium.

The rows are the unit test's hand-counted scenario (tests/unit/test_report.py ``seed``), so
every output is checked against the same expectations. "Now" figures depend on the wall clock
here (the server and the command use the system clock), so they are left out of comparisons.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dignity.storage.db import open_database
from tests.integration.browser import browser, save_screenshot
from tests.integration.server import LiveServer
from tests.unit.test_report import EXPECTED, _check_well_formed, _expected_rows, _rows, seed

__all__ = ["browser"]  # the fixture, imported for this module's tests

PERIOD = {"since": "2026-01-01", "until": "2026-04-01"}
# The figures that do not depend on when the report is made.
STABLE = [k for k in EXPECTED if k != "now"]


def _stable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in STABLE}


# -- the command --------------------------------------------------------------------------------


class Cli:
    def __init__(self, data: Path, url: str | None) -> None:
        self.env = {**os.environ, "DIGNITY_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
        self.env.pop("DIGNITY_DATABASE_URL", None)
        if url is not None:
            self.env["DIGNITY_DATABASE_URL"] = url

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dignity", "report", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def test_cli_end_to_end(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url)
    try:
        seed(db)
    finally:
        db.close()
    cli = Cli(tmp_path / "data", database_url)
    args = ("--since", PERIOD["since"], "--until", PERIOD["until"])

    r = cli(*args)  # JSON on stdout by default
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert _stable(data) == {k: EXPECTED[k] for k in STABLE}
    assert data["report"]["since"] == "2026-01-01T00:00:00+00:00"

    out = tmp_path / "out"
    out.mkdir()
    r = cli(*args, "--format", "csv", "-o", str(out / "report.csv"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and "report.csv" in r.stderr
    rows = _rows((out / "report.csv").read_text(encoding="utf-8"))
    assert rows[("requests", "received")] == "10"
    assert rows[("time_to_removal", "median_h")] == "20.0"
    expected = _expected_rows(data)
    for key in ("report", "now"):  # made at another moment than the JSON
        expected = {k: v for k, v in expected.items() if k[0] != key}
        rows = {k: v for k, v in rows.items() if k[0] != key}
    assert rows == expected

    r = cli(*args, "--format", "html", "-o", str(out / "report.html"))
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    parser, _ = _check_well_formed(html)
    text = " ".join(" ".join(parser.text).split())
    assert "Requests received 10" in text and "90th percentile 55.2 h" in text


def test_cli_refuses_bad_input_before_touching_the_database(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data", None)  # the default SQLite file in the data directory
    database = tmp_path / "data" / "dignity.sqlite3"
    for args, code in [
        (("--since", "last tuesday"), "report.bad_date"),
        (("--until", "2026-02-30"), "report.bad_date"),
        (("--since", "2026-03-01", "--until", "2026-03-01"), "report.bad_period"),
        (("--since", "2026-03-01", "--until", "2026-02-01"), "report.bad_period"),
        (("--since", "2001-01-01", "--until", "2026-02-01"), "report.bad_period"),
    ]:
        r = cli(*args)
        assert r.returncode == 3, (args, r.returncode, r.stderr)
        assert code in r.stderr and r.stdout == "", (args, r.stderr)
        assert not database.exists(), args
    r = cli("--format", "xml")
    assert r.returncode == 2 and "xml" in r.stderr
    r = cli("-o", str(tmp_path / "no-such-dir" / "report.json"))
    assert r.returncode == 3 and "report.output" in r.stderr, r.stderr
    assert not (tmp_path / "no-such-dir").exists()
    # And with good input the command makes its database and answers with zeros.
    r = cli("--since", "2026-01-01", "--until", "2026-02-01", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert _rows(r.stdout)[("requests", "received")] == "0"
    assert database.exists()


# -- the routes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(live: LiveServer) -> Iterator[LiveServer]:
    db = open_database(live.url)
    try:
        seed(db)
    finally:
        db.close()
    yield live


def test_json_for_staff(seeded: LiveServer) -> None:
    with seeded.client("reviewer") as c:
        r = c.get("/v1/report", params=PERIOD)
        assert r.status_code == 200, r.text
        assert _stable(r.json()) == {k: EXPECTED[k] for k in STABLE}
        r = c.get("/v1/report")  # the default period (up to now) holds every request
        assert r.status_code == 200, r.text
        assert r.json()["report"]["until"] > "2026-04-01"
    with seeded.client("admin") as c:
        assert c.get("/v1/report", params=PERIOD).status_code == 200
    with seeded.client("platform") as c:
        r = c.get("/v1/report", params=PERIOD)
        assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
    with seeded.client() as c:
        assert c.get("/v1/report").status_code == 401


@pytest.mark.parametrize("path", ["/v1/report", "/transparency", "/transparency.csv"])
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "soon"}, "report.bad_date"),
        ({"until": "2026-02-30"}, "report.bad_date"),
        ({"since": "x" * 5000}, "report.bad_date"),
        ({"since": "2026-03-01", "until": "2026-03-01"}, "report.bad_period"),
        ({"since": "1990-01-01", "until": "2026-03-01"}, "report.bad_period"),
    ],
)
def test_bad_periods_are_422(
    seeded: LiveServer, path: str, params: dict[str, str], code: str
) -> None:
    with seeded.client("reviewer") as c:
        r = c.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert len(r.text) < 1000  # the value is not echoed back whole


def test_public_page_and_csv(seeded: LiveServer) -> None:
    with seeded.client() as c:  # no key: the page is public
        r = c.get("/transparency", params=PERIOD)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "style-src 'self'" in r.headers["content-security-policy"]
        parser, _ = _check_well_formed(r.text)
        text = " ".join(" ".join(parser.text).split())
        assert "Requests received 10" in text and "Removed within 48 h 80.0 %" in text
        assert 'href="/transparency.csv?since=2026-01-01&amp;until=2026-04-01"' in r.text
        for asset in ("/assets/app.css", "/assets/report.css"):
            a = c.get(asset)
            assert a.status_code == 200 and a.headers["content-type"].startswith("text/css")

        r = c.get("/transparency.csv", params=PERIOD)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == (
            'attachment; filename="transparency-2026-01-01-to-2026-04-01.csv"'
        )
        rows = _rows(r.text)
    with seeded.client("reviewer") as c:
        data = c.get("/v1/report", params=PERIOD).json()
    expected = _expected_rows(data)
    for key in ("report", "now"):
        expected = {k: v for k, v in expected.items() if k[0] != key}
        rows = {k: v for k, v in rows.items() if k[0] != key}
    assert rows == expected
    # Not in the API document: public pages are not part of the keyed service.
    with seeded.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    assert "/transparency" not in paths and "/transparency.csv" not in paths
    assert "/v1/report" in paths


def test_page_in_chromium(seeded: LiveServer, browser: Any) -> None:
    context = browser.new_context(accept_downloads=True)
    # Report CSP violations the page itself would see (this script is the browser's, added by
    # Playwright, not the page's; the page has none).
    context.add_init_script(
        "window.__csp = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    try:
        page.goto(f"{seeded.base}/transparency?since=2026-01-01&until=2026-04-01")
        page.wait_for_load_state("networkidle")
        assert page.title() == "Transparency report – this platform"
        tiles = page.locator("dl.tiles")
        assert "Requests received" in tiles.inner_text()
        tile = page.locator("dl.tiles .tile", has_text="Requests received").locator("dd")
        assert tile.inner_text() == "10"
        median = page.locator("dl.tiles .tile", has_text="Median time to removal")
        assert median.locator("dd").inner_text() == "20.0 h"
        # Five charts, each visible, drawn with its bars, and the stylesheet applied to them.
        charts = page.locator("svg.chart")
        assert charts.count() == 5
        for i in range(5):
            chart = charts.nth(i)
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100
        fill = page.eval_on_selector(
            "#chart-monthly rect.bar-received", "e => getComputedStyle(e).fill"
        )
        assert fill == "rgb(36, 86, 166)"
        grid = page.eval_on_selector("dl.tiles", "e => getComputedStyle(e).display")
        assert grid == "grid"
        widths = page.eval_on_selector_all(
            "#chart-requests rect", "rs => rs.map(r => r.getBBox().width)"
        )
        assert widths[0] > widths[2] > 0  # received 10 > removed 5
        # The numbers of each chart are in a table beside it.
        assert page.locator("figure.chart-block table").count() == 5
        save_screenshot(page, "transparency-report")

        # The period form works from the keyboard: a date, then Enter on the focused button.
        page.fill("#since", "2026-02-01")
        page.get_by_role("button", name="Show").focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "since=2026-02-01" in page.url
        tile = page.locator("dl.tiles .tile", has_text="Requests received").locator("dd")
        assert tile.inner_text() == "7"  # February and March: r3 r4 r9, r5 r6 r7 r10

        with page.expect_download() as download:
            page.click("text=Download these figures as CSV")
        assert download.value.suggested_filename == ("transparency-2026-02-01-to-2026-04-01.csv")
        rows = _rows(Path(download.value.path()).read_text(encoding="utf-8"))
        assert rows[("requests", "received")] == "7"

        assert page.evaluate("window.__csp") == []
        assert problems == [], problems
        assert failed == [], failed
    finally:
        context.close()


def test_a_server_error_is_not_a_page(seeded: LiveServer) -> None:
    # An unknown query parameter is ignored; a bad one never becomes a 500.
    with httpx.Client(base_url=seeded.base, timeout=30) as c:
        r = c.get("/transparency", params={**PERIOD, "x": "1"})
        assert r.status_code == 200
        r = c.get("/transparency", params={"since": "2026-01-01T00:00:00+99:00"})
        assert r.status_code == 422 and r.json()["code"] == "report.bad_date"
