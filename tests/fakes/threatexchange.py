"""A fake Facebook ThreatExchange Graph API: ``/{privacy_group}/threat_updates/`` and reactions.

Updates are ordered by ``last_updated`` and filtered by ``start_time`` (inclusive); pages of
``limit`` carry ``paging.next`` as a full URL with every parameter, as the Graph API does (py-tx
clears its parameters after the first request and follows ``next`` as is). A deleted indicator
is served with ``should_delete: true`` and no descriptors. The access token must be given.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.fakes import FakeServer, Reply, Seen

APP_ID = 1234567890


class FakeThreatExchange(FakeServer):
    def __init__(self, *, token: str = f"{APP_ID}|abcdefghijklmnopqrstuvwxyz0123") -> None:
        super().__init__()
        self.token = token
        self.clock = 1_700_000_000
        self.updates: dict[tuple[str, str], dict[str, Any]] = {}
        self.reactions: list[tuple[str, str]] = []
        self.next_descriptor = 9000

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v99.0"

    def put(
        self,
        type_: str,
        indicator: str,
        *,
        status: str = "MALICIOUS",
        tags: list[str] | None = None,
    ) -> int:
        with self.lock:
            self.clock += 10
            self.next_descriptor += 1
            self.updates[(type_, indicator)] = {
                "id": str(abs(hash((type_, indicator))) % 10**12),
                "indicator": indicator,
                "type": type_,
                "last_updated": self.clock,
                "should_delete": False,
                "descriptors": {
                    "data": [
                        {
                            "id": str(self.next_descriptor),
                            "owner": {"id": "5550001"},
                            "status": status,
                            "tags": tags or ["ncii"],
                            "reactions": [],
                        }
                    ]
                },
            }
            return self.next_descriptor

    def delete(self, type_: str, indicator: str) -> None:
        with self.lock:
            self.clock += 10
            old = self.updates[(type_, indicator)]
            self.updates[(type_, indicator)] = {
                "id": old["id"],
                "indicator": indicator,
                "type": type_,
                "last_updated": self.clock,
                "should_delete": True,
            }

    def counts(self, seen: Seen) -> bool:
        return seen.path.endswith("/threat_updates/")

    def handle(self, seen: Seen) -> Reply:
        if seen.query.get("access_token") != self.token:
            err = {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException"}}
            return Reply(400, json.dumps(err).encode())
        if seen.method == "GET" and seen.path.endswith("/threat_updates/"):
            return self._updates(seen)
        if seen.method == "POST":
            descriptor = seen.path.strip("/").split("/")[-1]
            self.reactions.append((descriptor, seen.query.get("reactions", "")))
            return Reply(200, b'{"success": true}')
        return Reply(404, b'{"error": {"message": "unknown path"}}')

    def _updates(self, seen: Seen) -> Reply:
        q = seen.query
        start = int(q["start_time"]) if q.get("start_time") else None
        limit = int(q.get("limit") or 100)
        offset = int(q.get("after") or 0)
        matching = sorted(
            (u for u in self.updates.values() if start is None or u["last_updated"] >= start),
            key=lambda u: (u["last_updated"], u["indicator"]),
        )
        page = matching[offset : offset + limit]
        body: dict[str, Any] = {"data": page}
        if offset + limit < len(matching):
            nq = {**q, "after": str(offset + limit)}
            body["paging"] = {"next": f"{self.origin}{seen.path}?{urllib.parse.urlencode(nq)}"}
        return Reply(200, json.dumps(body).encode())
