"""A fake NCMEC hash-sharing API (v2, XML) as py-tx's ``NCMECHashAPI`` calls it.

``GET /v2/entries?from=&to=`` lists entries whose timestamp falls in [from, to), ordered, in
pages of ``page_size`` with a ``<paging><next>`` path carrying ``start``/``size``/``max`` as
the real service does. A deleted entry is served as a ``deletedImage``/``deletedVideo``
tombstone with no fingerprints. Feedback is ``PUT /v2/entries/{esp}/{id}/{TYPE}/feedback``.
"""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from tests.fakes import FakeServer, Reply, Seen

_FMT = "%Y-%m-%dT%H:%M:%SZ"
NS = "https://hashsharing.ncmec.org/hashsharing/v2"


def _ts(text: str) -> int:
    return int(datetime.strptime(text, _FMT).replace(tzinfo=UTC).timestamp())


def _fmt(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(_FMT)


@dataclass
class NcmecEntry:
    member: int
    id: str
    kind: str  # image | video
    ts: int
    fingerprints: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    classification: str = "A1"


class FakeNCMEC(FakeServer):
    def __init__(
        self, *, user: str = "esp-user", password: str = "esp-password-1", page_size: int = 2
    ):
        super().__init__()
        self.user = user
        self.password = password
        self.page_size = page_size
        self.entries: dict[tuple[int, str], NcmecEntry] = {}
        self.feedback: list[tuple[str, bytes]] = []

    @property
    def base_url(self) -> str:
        return self.origin

    def credentials(self) -> str:
        return f"{self.user}:{self.password}"

    def put(self, entry: NcmecEntry) -> None:
        with self.lock:
            self.entries[(entry.member, entry.id)] = entry

    def delete(self, member: int, entry_id: str, ts: int) -> None:
        with self.lock:
            e = self.entries[(member, entry_id)]
            self.entries[(member, entry_id)] = NcmecEntry(member, entry_id, e.kind, ts, {}, True)

    def counts(self, seen: Seen) -> bool:
        return seen.path == "/v2/entries"

    def handle(self, seen: Seen) -> Reply:
        auth = seen.headers.get("authorization", "")
        want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if auth != f"Basic {want}":
            return Reply(401, b"<error>unauthorized</error>", "application/xml")
        if seen.method == "GET" and seen.path == "/v2/entries":
            return self._entries(seen.query)
        if seen.method == "GET" and seen.path.startswith("/v2/feedback/"):
            body = (
                f'<availableFeedbackReasons xmlns="{NS}"><reason guid="g-1" name="Not NCII" '
                'type="Pdq"/></availableFeedbackReasons>'
            )
            return Reply(200, body.encode(), "application/xml")
        if seen.method == "PUT" and seen.path.endswith("/feedback"):
            self.feedback.append((seen.path, seen.body))
            return Reply(200, f'<submissionResult xmlns="{NS}"/>'.encode(), "application/xml")
        return Reply(404, b"<error>not found</error>", "application/xml")

    def _entries(self, q: dict[str, str]) -> Reply:
        lo, hi = _ts(q["from"]), _ts(q["to"])
        offset = int(q.get("start", "0"))
        matching = sorted(
            (e for e in self.entries.values() if lo <= e.ts < hi),
            key=lambda e: (e.ts, e.member, e.id),
        )
        page = matching[offset : offset + self.page_size]
        parts = [f'<?xml version="1.0" encoding="UTF-8"?><queryResult xmlns="{NS}">']
        for kind in ("image", "video"):
            of_kind = [e for e in page if e.kind == kind]
            if not of_kind:
                continue
            top = max(e.ts for e in of_kind)
            parts.append(f'<{kind}s count="{len(of_kind)}" maxTimestamp="{_fmt(top)}">')
            for e in of_kind:
                tag = ("deleted" + kind.capitalize()) if e.deleted else kind
                parts.append(
                    f'<{tag}><member id="{e.member}">Member {e.member}</member>'
                    f"<timestamp>{_fmt(e.ts)}</timestamp><id>{escape(e.id)}</id>"
                )
                if not e.deleted:
                    parts.append(f"<classification>{e.classification}</classification>")
                    parts.append("<fingerprints>")
                    for fp, value in e.fingerprints.items():
                        parts.append(f"<{fp}>{escape(value)}</{fp}>")
                    parts.append("</fingerprints>")
                parts.append(f"</{tag}>")
            parts.append(f"</{kind}s>")
        if offset + self.page_size < len(matching):
            nxt = "/v2/entries?" + urllib.parse.urlencode(
                {
                    "from": q["from"],
                    "to": q["to"],
                    "start": offset + self.page_size,
                    "size": self.page_size,
                    "max": len(matching),
                }
            )
            parts.append(f"<paging><next>{escape(nxt)}</next></paging>")
        parts.append("</queryResult>")
        return Reply(200, "".join(parts).encode(), "application/xml")
