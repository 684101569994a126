"""A fake StopNCII hash API (``FetchHashes``, ``SubmitFeedback``) as py-tx's client calls it.

Records are the aggregate state of one (signal type, hash); every change moves the record's
``lastModtimestamp`` forward, like the real service. ``FetchHashes`` returns records modified
at or after ``startTimestamp`` in pages of ``pageSize``, with an opaque ``nextPageToken`` bound
to that start, and ``nextSetTimestamp`` = the newest modification time of the *whole* result
set (so a client that stores it after the first page of several would skip records).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.fakes import FakeServer, Reply, Seen


class FakeStopNCII(FakeServer):
    def __init__(
        self,
        *,
        fetch_key: str = "fetch-key-123456",
        subscription_key: str = "subscription-key-123456",
        feedback_key: str = "feedback-key-123456",
        page_size: int | None = None,
    ) -> None:
        super().__init__()
        self.fetch_key = fetch_key
        self.subscription_key = subscription_key
        self.feedback_key = feedback_key
        self.page_size = page_size  # overrides the client's pageSize when set
        self.clock = 1_700_000_000
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.feedback: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def credentials(self, *, feedback: bool = True) -> str:
        obj = {"fetch_function_key": self.fetch_key, "subscription_key": self.subscription_key}
        if feedback:
            obj["submit_feedback_function_key"] = self.feedback_key
        return json.dumps(obj)

    def put(
        self,
        value: str,
        *,
        signal_type: str = "ImagePDQ",
        status: str = "Active",
        cases: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        with self.lock:
            self.clock += 10
            self.records[(signal_type, value)] = {
                "lastModtimestamp": self.clock,
                "signalType": signal_type,
                "hashValue": value,
                "hashStatus": status,
                "caseNumbers": cases
                if cases is not None
                else {f"case-{len(self.records)}": status},
                **extra,
            }

    def counts(self, seen: Seen) -> bool:
        return seen.path.endswith("/FetchHashes")

    def fetches(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/FetchHashes")]

    def handle(self, seen: Seen) -> Reply:
        h = seen.headers
        if h.get("ocp-apim-subscription-key") != self.subscription_key:
            return Reply(401, b'{"message": "bad subscription key"}')
        if seen.method == "GET" and seen.path == "/v1/FetchHashes":
            if h.get("x-functions-key") != self.fetch_key:
                return Reply(401, b'{"message": "bad function key"}')
            return self._fetch(seen.query)
        if seen.method == "POST" and seen.path == "/v1/SubmitFeedback":
            if h.get("x-functions-key") != self.feedback_key:
                return Reply(401, b'{"message": "bad function key"}')
            self.feedback.append(json.loads(seen.body))
            return Reply(200, b"{}")
        return Reply(404, b'{"message": "no such endpoint"}')

    def _fetch(self, q: dict[str, str]) -> Reply:
        start = int(q.get("startTimestamp", "0"))
        size = self.page_size or int(q.get("pageSize", "800"))
        offset = 0
        if q.get("nextPageToken"):
            try:
                tok = json.loads(base64.urlsafe_b64decode(q["nextPageToken"]))
            except ValueError:
                return Reply(400, b'{"message": "bad page token"}')
            if tok.get("start") != start:
                return Reply(400, b'{"message": "page token is for another startTimestamp"}')
            offset = int(tok["offset"])
        matching = sorted(
            (r for r in self.records.values() if r["lastModtimestamp"] >= start),
            key=lambda r: (r["lastModtimestamp"], r["hashValue"]),
        )
        page = matching[offset : offset + size]
        more = offset + size < len(matching)
        token = None
        if more:
            raw = json.dumps({"start": start, "offset": offset + size}).encode()
            token = base64.urlsafe_b64encode(raw).decode()
        body = {
            "count": len(page),
            "nextSetTimestamp": max((r["lastModtimestamp"] for r in matching), default=start),
            "nextPageToken": token,
            "hasMoreRecords": more,
            "hashRecords": page,
        }
        return Reply(200, json.dumps(body).encode())
