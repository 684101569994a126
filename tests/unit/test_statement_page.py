"""The statement of reasons page as the server renders it from its template: every value is text
on the page, missing values leave nothing behind, and the appeal form shows only while open."""

from __future__ import annotations

from typing import Any

from dignity.api.notices import statement_html
from dignity.takedown.notices import MAX_APPEAL_TEXT

HOSTILE = '<b id="injected">x</b>'


def _statement(**changes: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "public_id": "st-1",
        "content_id": f"c-{HOSTILE}",
        "issued_at": "2026-04-01T12:00:00+02:00",
        "appeal_until": "2026-10-01T10:00:00+00:00",
        "appeal_open": True,
        "art17": {
            "restriction": HOSTILE,
            "source": "notice",
            "facts_and_circumstances": "A & B",
            "automated_means": {"description": "PDQ match", "detection": True},
            "legal_ground": {"provision": "TAKE IT DOWN Act", "explanation": None},
            "redress": {"internal_complaint": {"how": "Use the form below."}},
        },
    }
    st.update(changes)
    return st


def test_values_are_escaped_and_none_leaves_nothing() -> None:
    page = statement_html(f"Pics {HOSTILE}", _statement())
    assert HOSTILE not in page and "&lt;b id=" in page
    assert "A &amp; B" in page
    # Times are shown in UTC, whatever offset the statement was issued in.
    assert "01 April 2026, 10:00 UTC" in page
    assert "(detection: yes; decision: no)" in page
    assert "None" not in page
    assert "Contractual ground" not in page and "Synthetic media" not in page
    assert 'id="appeal-form" data-public-id="st-1"' in page
    assert f'maxlength="{MAX_APPEAL_TEXT}"' in page


def test_appeal_states() -> None:
    open_appeal = {"state": "open", "received_at": "2026-04-02T10:00:00+00:00"}
    page = statement_html("P", _statement(appeal=open_appeal, appeal_open=False))
    assert "is being reviewed" in page and "appeal-form" not in page
    assert "window has closed" not in page
    restored = statement_html(
        "P", _statement(restored_at="2026-05-01T10:00:00Z", appeal_open=False)
    )
    assert "restored on 01 May 2026, 10:00 UTC" in restored
    closed = statement_html("P", _statement(appeal_open=False, synthetic=True))
    assert "The appeal window has closed." in closed and "Synthetic media" in closed


def test_unknown_statement() -> None:
    page = statement_html("P", None)
    assert "No such statement" in page and "appeal-form" not in page
