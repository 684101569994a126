"""A python-threatexchange ``SignalExchangeAPI`` for another dignity instance's partner feed.

py-tx has no client for dignity's ``GET /v1/feed`` (documented in ``dignity.api.feed``), so
this module adds one in py-tx's own terms: a collaboration config with the feed's base URL, a
cursor checkpoint, one update record per feed item id (a withdrawn item merges to ``None``,
i.e. delete), and ``fetch_iter`` paging through the cursor. dignity's exchange runner uses it
like the built-in APIs, and anything built on py-tx (HMA, the ``threatexchange`` CLI) could too.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

from dignity.exchanges.base import ExchangeError

API_NAME = "dignity_feed"
PAGE_LIMIT = 500


@dataclass
class DignityFeedCheckpoint(state.FetchCheckpointBase):
    cursor: int = 0

    def get_progress_timestamp(self) -> int | None:
        return None


@dataclass
class DignityFeedCollabConfig(CollaborationConfigWithDefaults):
    base_url: str = ""
    api: str = field(init=False, default=API_NAME)


@dataclass
class DignityFeedItem(state.FetchedSignalMetadata):
    """One feed item: a hash of one case, active or withdrawn."""

    id: str
    signal: str
    value: str
    status: str
    seq: int
    frames: list[t.Any] = field(default_factory=list)  # an active vpdq item's frames


def parse_item(obj: object) -> DignityFeedItem:
    if not isinstance(obj, dict):
        raise ExchangeError("a feed item is not an object", code="exchange.protocol")
    try:
        item = DignityFeedItem(
            id=str(obj["id"]),
            signal=str(obj["signal"]),
            value=str(obj["value"]),
            status=str(obj["status"]),
            seq=int(obj["seq"]),
            frames=list(obj.get("frames") or []),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExchangeError(
            f"a feed item lacks a field or has a bad one: {exc}", code="exchange.protocol"
        ) from exc
    if item.status not in ("active", "withdrawn") or not item.id:
        raise ExchangeError(
            f"feed item {item.id!r} has status {item.status!r}", code="exchange.protocol"
        )
    return item


class DignityFeedSignalExchangeAPI(
    SignalExchangeAPI[
        DignityFeedCollabConfig, DignityFeedCheckpoint, DignityFeedItem, str, DignityFeedItem
    ]
):
    """Pages ``GET {base_url}/v1/feed?cursor=N`` with a partner key."""

    def __init__(
        self, collab: DignityFeedCollabConfig, api_key: str, *, timeout: float = 60.0
    ) -> None:
        self.collab = collab
        self._key = api_key
        self._timeout = timeout
        # Items the last page held that did not follow the format: (problem, item id or "").
        self.rejected: list[tuple[str, str]] = []

    @classmethod
    def get_name(cls) -> str:
        return API_NAME

    @classmethod
    def for_collab(
        cls, collab: DignityFeedCollabConfig, credentials: str | None = None
    ) -> DignityFeedSignalExchangeAPI:
        if not credentials:
            raise ValueError("a dignity feed needs a partner API key")
        return cls(collab, credentials)

    @staticmethod
    def get_checkpoint_cls() -> type[DignityFeedCheckpoint]:
        return DignityFeedCheckpoint

    @staticmethod
    def get_record_cls() -> type[DignityFeedItem]:
        return DignityFeedItem

    @staticmethod
    def get_config_cls() -> type[DignityFeedCollabConfig]:
        return DignityFeedCollabConfig

    @classmethod
    def fetch_value_merge(
        cls, old: DignityFeedItem | None, new: DignityFeedItem | None
    ) -> DignityFeedItem | None:
        if new is None or new.status == "withdrawn":
            return None
        return new

    @classmethod
    def naive_convert_to_signal_type(
        cls,
        signal_types: Sequence[type[SignalType]],
        collab: DignityFeedCollabConfig,
        fetched: Mapping[str, DignityFeedItem],
    ) -> dict[type[SignalType], dict[str, DignityFeedItem]]:
        by_name: dict[str, type[SignalType]] = {
            "pdq": PdqSignal,
            "md5": VideoMD5Signal,
            "video_md5": VideoMD5Signal,
        }
        ret: dict[type[SignalType], dict[str, DignityFeedItem]] = {}
        for item in fetched.values():
            st = by_name.get(item.signal)
            if st is not None and st in signal_types and item.status == "active":
                ret.setdefault(st, {})[item.value] = item
        return ret

    def fetch_iter(
        self,
        supported_signal_types: Sequence[type[SignalType]],
        checkpoint: DignityFeedCheckpoint | None,
    ) -> Iterator[state.FetchDelta[str, DignityFeedItem, DignityFeedCheckpoint]]:
        cursor = checkpoint.cursor if checkpoint is not None else 0
        url = self.collab.base_url.rstrip("/") + "/v1/feed"
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        with httpx.Client(timeout=self._timeout, headers=headers) as client:
            while True:
                response = client.get(url, params={"cursor": cursor, "limit": PAGE_LIMIT})
                response.raise_for_status()
                try:
                    body = response.json()
                    items = body["items"]
                    next_cursor = int(body["next_cursor"])
                    has_more = bool(body["has_more"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ExchangeError(
                        f"the feed page is not in the feed format: {exc}", code="exchange.protocol"
                    ) from exc
                if not isinstance(items, list) or next_cursor < cursor:
                    raise ExchangeError(
                        "the feed page has no item list or moved backwards",
                        code="exchange.protocol",
                    )
                updates: dict[str, DignityFeedItem | None] = {}
                self.rejected = []
                for obj in items:
                    try:
                        item = parse_item(obj)
                    except ExchangeError as exc:
                        ident = str(obj.get("id", "")) if isinstance(obj, dict) else ""
                        self.rejected.append((exc.message, ident))
                        continue
                    # Later items win: a page may carry an id's addition and its withdrawal.
                    updates.pop(item.id, None)
                    updates[item.id] = item
                yield state.FetchDelta(updates, DignityFeedCheckpoint(next_cursor))
                if not has_more or (next_cursor == cursor and not items):
                    return
                cursor = next_cursor


__all__: t.Sequence[str] = (
    "DignityFeedCheckpoint",
    "DignityFeedCollabConfig",
    "DignityFeedItem",
    "DignityFeedSignalExchangeAPI",
)
