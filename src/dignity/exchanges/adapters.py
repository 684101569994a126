"""Adapters from python-threatexchange's ``SignalExchangeAPI`` implementations to our runner.

Each adapter builds the real py-tx API object (and its real HTTP client) from an exchange's
stored configuration, fetches through it, and maps what comes back to :class:`Record` values
with dignity signal names. Where py-tx 1.2.17 loses information we need, the adapter reads it
from the client's own data instead of relying on the lossy path, and says so here:

* **StopNCII**: ``StopNCIISignalExchangeAPI.fetch_iter`` is not used. Its ``_get_delta_mapping``
  tests ``hashValue`` where it means ``hashStatus``, so Withdrawn/Deleted hashes are never
  removed; it drops unknown signal types without a trace; and it checkpoints every page at
  ``nextSetTimestamp``, which is only safe if that timestamp describes the page rather than the
  whole result set. We call the py-tx client's ``fetch_hashes`` page by page, read
  ``hashStatus`` (and the per-case statuses) ourselves, keep the page token in the checkpoint
  while a result set is being paged, and only move the timestamp once a set is complete. The
  client also silently drops records it cannot deserialize (an unexpected enum value anywhere,
  e.g. a new feedback value): we keep the raw page and read such records' type, value and status
  leniently, so a withdrawal is not lost because of an unrelated field.
* **NCMEC**: ``NCMECEnvironment`` is an enum of the real hosts and there is no URL parameter;
  with ``--url`` we set the py-tx client's ``_base_url`` on our instance (a subclass of
  ``NCMECSignalExchangeAPI`` overriding ``get_client``). Deleted entries are tombstones without
  fingerprints; the runner's record memory finds their hashes. Image MD5s are kept (py-tx keeps
  only video MD5); fingerprint types dignity cannot match (PhotoDNA, SHA-1, ...) are counted.
* **Facebook ThreatExchange**: the client takes ``endpoint_override``; we construct the API
  object with it instead of ``for_collab``. ``fetch_iter`` asserts that no page is empty, but
  a privacy group with nothing new answers exactly that, so we run its loop (same client calls,
  same ``FBThreatExchangeIndicatorRecord`` conversion) without the assertion. Records every
  descriptor of which calls ``NON_MALICIOUS`` are treated as removed.
* **Local file**: ``LocalFileSignalExchangeAPI`` re-reads the whole file each time, so it is a
  snapshot exchange: hashes that disappear from the file are withdrawn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import requests
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.clients.fb_threatexchange.api import (
    ThreatExchangeAPI,
    is_valid_app_token,
)
from threatexchange.exchanges.clients.fb_threatexchange.threat_updates import ThreatUpdateJSON
from threatexchange.exchanges.clients.ncmec import hash_api as ncmec_api
from threatexchange.exchanges.clients.stopncii import api as stopncii_api
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.impl.fb_threatexchange_api import (
    FBThreatExchangeCheckpoint,
    FBThreatExchangeCollabConfig,
    FBThreatExchangeIndicatorRecord,
    FBThreatExchangeSignalExchangeAPI,
)
from threatexchange.exchanges.impl.file_api import (
    FileCollaborationConfig,
    LocalFileSignalExchangeAPI,
)
from threatexchange.exchanges.impl.ncmec_api import (
    NCMECCheckpoint,
    NCMECCollabConfig,
    NCMECSignalExchangeAPI,
    _NCMECPagingInfo,
)
from threatexchange.exchanges.impl.stop_ncii_api import (
    StopNCIICheckpoint,
    StopNCIISignalExchangeAPI,
)

from dignity.errors import DignityError
from dignity.exchanges.base import (
    Adapter,
    ExchangeError,
    ExchangeSpec,
    Page,
    Record,
    StoredRecord,
    unsupported_feedback,
)
from dignity.exchanges.feed_client import (
    DignityFeedCheckpoint,
    DignityFeedCollabConfig,
    DignityFeedItem,
    DignityFeedSignalExchangeAPI,
)


def _bad_credentials(kind: str, expected: str) -> ExchangeError:
    return ExchangeError(
        f"{kind} credentials must be {expected}", code="exchange.bad_credentials", kind=kind
    )


def _need_credentials(spec: ExchangeSpec, expected: str) -> str:
    if not spec.credentials:
        raise ExchangeError(
            f"exchange {spec.name!r} ({spec.kind}) has no credentials; set them with "
            f"`dignity exchange update {spec.name} --credentials ...` ({expected})",
            code="exchange.no_credentials",
            exchange=spec.name,
        )
    return spec.credentials.strip()


# -- StopNCII -----------------------------------------------------------------------------
STOPNCII_TYPES = {"ImagePDQ": "pdq", "VideoMD5": "video_md5"}
STOPNCII_GONE = frozenset({"Withdrawn", "Deleted"})
STOPNCII_CREDENTIALS = (
    "'FETCH_FUNCTION_KEY,SUBSCRIPTION_KEY' (as py-tx's TX_STOPNCII_KEYS) or JSON "
    '{"fetch_function_key", "subscription_key", "submit_feedback_function_key" (optional)}'
)


class _CapturingStopNCIIClient(stopncii_api.StopNCIIAPI):
    """py-tx's StopNCII client, keeping the raw JSON of the last page it fetched."""

    last_raw: Any = None

    def _get(self, endpoint: Any, **params: Any) -> Any:
        self.last_raw = None
        data = super()._get(endpoint, **params)
        self.last_raw = data
        return data


def _stopncii_record(
    sig: str, value: str, status: str, case_statuses: list[str], meta: dict[str, Any]
) -> Record:
    gone = status in STOPNCII_GONE or bool(
        case_statuses and all(c in STOPNCII_GONE for c in case_statuses)
    )
    rec = Record(key=f"{sig}:{value.strip().lower()}", removed=gone, meta=meta)
    mapped = STOPNCII_TYPES.get(sig)
    if mapped:
        rec.hashes.append((mapped, value))
    else:
        rec.unknown.append(sig or "(none)")
    return rec


class StopNCIIAdapter:
    snapshot: ClassVar[bool] = False

    def __init__(self, spec: ExchangeSpec) -> None:
        text = _need_credentials(spec, STOPNCII_CREDENTIALS)
        feedback_key = ""
        if text.startswith("{"):
            try:
                obj = json.loads(text)
                fetch_key = str(obj["fetch_function_key"])
                sub_key = str(obj["subscription_key"])
                feedback_key = str(obj.get("submit_feedback_function_key") or "")
            except (ValueError, KeyError, TypeError) as exc:
                raise _bad_credentials("stopncii", STOPNCII_CREDENTIALS) from exc
        else:
            parts = [p.strip() for p in text.split(",")]
            if len(parts) != 2:
                raise _bad_credentials("stopncii", STOPNCII_CREDENTIALS)
            fetch_key, sub_key = parts
        if not fetch_key or not sub_key:
            raise _bad_credentials("stopncii", STOPNCII_CREDENTIALS)
        extra = {stopncii_api.StopNCIIEndpoint.SubmitFeedback: feedback_key} if feedback_key else {}
        self.client = _CapturingStopNCIIClient(
            sub_key,
            fetch_key,
            additional_function_keys=extra,
            base_url_override=spec.base_url.rstrip("/") if spec.base_url else None,
        )
        collab = CollaborationConfigBase(name=spec.name, api="stop_ncii", enabled=True)
        self.api = StopNCIISignalExchangeAPI(collab, self.client)
        self.has_feedback_key = bool(feedback_key)

    def is_stale(self, checkpoint: dict[str, Any]) -> bool:
        cp = StopNCIICheckpoint(int(checkpoint["update_time"]), int(checkpoint["last_fetch_time"]))
        return bool(cp.is_stale())

    def pages(self, checkpoint: dict[str, Any] | None) -> Iterator[Page]:
        start = int(checkpoint["update_time"]) if checkpoint else 0
        start = start or stopncii_api.StopNCIIAPI.DEFAULT_START_TIME
        token = str(checkpoint.get("next_page") or "") if checkpoint else ""
        expired = 0
        while True:
            try:
                resp = self.api.api.fetch_hashes(start_timestamp=start, next_page=token)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                # A stored page token is only good for a while: start the set again (every
                # record is idempotent to re-apply) rather than fail forever.
                if token and status in (400, 404, 410) and not expired:
                    token, expired = "", 1
                    continue
                raise
            page = self._page(resp, self.client.last_raw)
            page.notes["page_token_expired"] += expired
            expired = 0
            now = int(time.time())
            if resp.hasMoreRecords and resp.nextPageToken:
                token = resp.nextPageToken
                page.checkpoint = {"update_time": start, "next_page": token, "last_fetch_time": now}
                yield page
                continue
            done = StopNCIICheckpoint.from_stopncii_fetch(resp)
            if resp.hasMoreRecords and done.update_time > start:
                # More records but no token: the documented way on is the set timestamp.
                start, token = int(done.update_time), ""
                page.checkpoint = {"update_time": start, "last_fetch_time": now}
                yield page
                continue
            if resp.hasMoreRecords:
                raise ExchangeError(
                    "StopNCII says it has more records but gives neither a page token nor a "
                    "later timestamp",
                    code="exchange.protocol",
                )
            page.checkpoint = {"update_time": int(done.update_time), "last_fetch_time": now}
            yield page
            return

    def _page(self, resp: Any, raw: Any) -> Page:
        page = Page(records=[], checkpoint=None)
        parsed = list(resp.hashRecords)
        raw_records = raw.get("hashRecords", []) if isinstance(raw, dict) else []
        j = 0
        for raw_rec in raw_records if isinstance(raw_records, list) else []:
            if j < len(parsed) and _same_stopncii(raw_rec, parsed[j]):
                r = parsed[j]
                j += 1
                page.records.append(
                    _stopncii_record(
                        r.signalType.value,
                        r.hashValue,
                        r.hashStatus.value,
                        [c.value for c in r.caseNumbers.values()],
                        {"signal_type": r.signalType.value, "hash_value": r.hashValue},
                    )
                )
                continue
            # py-tx dropped this record (it logs and skips anything dacite cannot read).
            rec = _lenient_stopncii(raw_rec)
            if rec is None:
                page.errors["unreadable_record"] += 1
                page.error_samples.append(
                    {"type": "unreadable_record", "message": str(raw_rec)[:200]}
                )
            else:
                page.notes["read_leniently"] += 1
                page.records.append(rec)
        return page

    def feedback(
        self, records: list[StoredRecord], verdict: str, tags: list[str]
    ) -> dict[str, Any]:
        if not self.has_feedback_key:
            raise ExchangeError(
                "StopNCII feedback needs a SubmitFeedback function key: store the credentials "
                'as JSON with "submit_feedback_function_key"',
                code="exchange.no_credentials",
            )
        value = {
            "blocked": stopncii_api.StopNCIICSPFeedbackValue.Blocked,
            "not_blocked": stopncii_api.StopNCIICSPFeedbackValue.NotBlocked,
        }[verdict]
        feedbacks = {}
        for r in records:
            sig = stopncii_api.StopNCIISignalType(r.meta.get("signal_type", "ImagePDQ"))
            raw_value = str(r.meta.get("hash_value") or r.value)
            feedbacks[(sig, raw_value)] = stopncii_api.StopNCIICSPFeedback(value, set(tags))
        self.client.submit_feedbacks(feedbacks)
        return {"sent": len(feedbacks)}


def _same_stopncii(raw: Any, rec: Any) -> bool:
    return (
        isinstance(raw, dict)
        and raw.get("hashValue") == rec.hashValue
        and raw.get("signalType") == rec.signalType.value
    )


def _lenient_stopncii(raw: Any) -> Record | None:
    if not isinstance(raw, dict):
        return None
    sig, value, status = raw.get("signalType"), raw.get("hashValue"), raw.get("hashStatus")
    if not isinstance(sig, str) or not isinstance(value, str) or not value:
        return None
    cases = raw.get("caseNumbers")
    case_statuses = [str(v) for v in cases.values()] if isinstance(cases, dict) else []
    return _stopncii_record(
        sig, value, str(status), case_statuses, {"signal_type": sig, "hash_value": value}
    )


# -- NCMEC --------------------------------------------------------------------------------
NCMEC_TYPES = {
    ("image", "pdq"): "pdq",
    ("image", "md5"): "md5",
    ("video", "md5"): "video_md5",
}
NCMEC_CREDENTIALS = "'USER:PASSWORD' (as py-tx's TX_NCMEC_CREDENTIALS)"
NCMEC_FINGERPRINTS = {"pdq": "PDQ", "md5": "MD5", "video_md5": "MD5"}


class _NCMECAPI(NCMECSignalExchangeAPI):
    """py-tx's NCMEC API, pointed at ``base_url`` when one is configured."""

    def __init__(self, collab: Any, user: str, password: str, base_url: str | None) -> None:
        super().__init__(collab, user, password)
        self._dignity_base_url = base_url

    def get_client(self, environment: Any) -> Any:
        client = super().get_client(environment)
        if self._dignity_base_url:
            # No parameter for this in py-tx: the environment enum holds the real hosts only.
            client._base_url = self._dignity_base_url.rstrip("/")
        return client


class NCMECAdapter:
    snapshot: ClassVar[bool] = False

    def __init__(self, spec: ExchangeSpec) -> None:
        text = _need_credentials(spec, NCMEC_CREDENTIALS)
        user, _, password = text.partition(":")
        if not user or not password:
            raise _bad_credentials("ncmec", NCMEC_CREDENTIALS)
        env_name = str(spec.config.get("environment", "Industry"))
        try:
            self.environment = ncmec_api.NCMECEnvironment[env_name]
        except KeyError as exc:
            raise ExchangeError(
                f"unknown NCMEC environment {env_name!r} (one of "
                f"{', '.join(e.name for e in ncmec_api.NCMECEnvironment)})",
                code="exchange.bad_config",
            ) from exc
        only = {int(x) for x in spec.config.get("only_esp_ids", [])}
        collab = NCMECCollabConfig(name=spec.name, environment=self.environment, only_esp_ids=only)
        self.api = _NCMECAPI(collab, user, password, spec.base_url)
        self.only = only

    def is_stale(self, checkpoint: dict[str, Any]) -> bool:
        return False  # NCMEC ids live forever (py-tx's NCMECCheckpoint says so too)

    def pages(self, checkpoint: dict[str, Any] | None) -> Iterator[Page]:
        cp = None
        if checkpoint:
            info = checkpoint.get("paging_info")
            paging = _NCMECPagingInfo(**info) if info else None
            if paging is not None and not paging.is_valid:
                paging = None  # an old paging URL: re-fetch the range from its start
            cp = NCMECCheckpoint(int(checkpoint["get_entries_max_ts"]), paging)
        for delta in self.api.fetch_iter([], cp):
            page = Page(records=[], checkpoint=_ncmec_checkpoint(delta.checkpoint))
            for key, entry in delta.updates.items():
                page.records.append(self._record(key, entry))
            yield page

    def _record(self, key: str, entry: Any) -> Record:
        meta = {"member_id": entry.member_id, "entry_id": entry.id}
        rec = Record(key=key, meta=meta)
        if entry.deleted or (self.only and entry.member_id not in self.only):
            rec.removed = True
            return rec
        for fp_type, fp_value in entry.fingerprints.items():
            mapped = NCMEC_TYPES.get((entry.entry_type.value, fp_type.lower()))
            if mapped:
                rec.hashes.append((mapped, fp_value))
            else:
                rec.unknown.append(f"{entry.entry_type.value}/{fp_type}")
        return rec

    def feedback(
        self, records: list[StoredRecord], verdict: str, tags: list[str]
    ) -> dict[str, Any]:
        client = self.api.get_client(self.environment)
        kind = (
            ncmec_api.FeedbackType.upvote
            if verdict == "blocked"
            else ncmec_api.FeedbackType.downvote
        )
        sent = 0
        for r in records:
            fp = ncmec_api.FingerprintType(NCMEC_FINGERPRINTS[r.signal])
            try:
                client.submit_feedback(
                    int(r.meta["member_id"]),
                    str(r.meta["entry_id"]),
                    fp,
                    kind,
                    negative_reason_guid=tags[0] if tags and kind.value == "downvote" else None,
                )
            except requests.RequestException:
                raise
            except Exception as exc:  # py-tx raises bare Exception for "pick a reason"
                raise ExchangeError(
                    f"NCMEC feedback refused: {exc} (give the reason GUID with --tag)",
                    code="exchange.feedback_failed",
                ) from exc
            sent += 1
        return {"sent": sent}


def _ncmec_checkpoint(cp: Any) -> dict[str, Any]:
    info = asdict(cp.paging_info) if cp.paging_info is not None else None
    return {"get_entries_max_ts": int(cp.get_entries_max_ts), "paging_info": info}


# -- Facebook ThreatExchange -----------------------------------------------------------------
TE_TYPES = {
    "HASH_PDQ": "pdq",
    "HASH_MD5": "md5",
    "HASH_VIDEO_MD5": "video_md5",
    # py-tx's vPDQ extension (VideoVPDQSignal): the value is its JSON list of frames.
    "HASH_VIDEO_VPDQ": "vpdq",
    "HASH_SHA256": "sha256",
    "HASH_VIDEO_SHA256": "sha256",
}
TE_REACTIONS = {"blocked": "HELPFUL", "not_blocked": "NOT_HELPFUL"}


class ThreatExchangeAdapter:
    snapshot: ClassVar[bool] = False

    def __init__(self, spec: ExchangeSpec) -> None:
        token = _need_credentials(spec, "an app access token 'APP_ID|SECRET'")
        if not is_valid_app_token(token):
            raise _bad_credentials("fb_threatexchange", "an app access token 'APP_ID|SECRET'")
        try:
            group = int(spec.config["privacy_group"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ExchangeError(
                "a fb_threatexchange exchange needs --privacy-group ID",
                code="exchange.bad_config",
            ) from exc
        self.client = ThreatExchangeAPI(
            token, endpoint_override=spec.base_url.rstrip("/") if spec.base_url else None
        )
        self.api = FBThreatExchangeSignalExchangeAPI(
            self.client, FBThreatExchangeCollabConfig(name=spec.name, privacy_group=group)
        )

    def is_stale(self, checkpoint: dict[str, Any]) -> bool:
        cp = FBThreatExchangeCheckpoint(
            int(checkpoint["update_time"]), int(checkpoint["last_fetch_time"])
        )
        return bool(cp.is_stale())

    def pages(self, checkpoint: dict[str, Any] | None) -> Iterator[Page]:
        cp = None
        if checkpoint:
            cp = FBThreatExchangeCheckpoint(
                int(checkpoint["update_time"]), int(checkpoint["last_fetch_time"])
            )
        # Not fetch_iter: it asserts every page is non-empty ("empty update?"), and an up to
        # date privacy group answers an empty page, so polling would always fail. This is
        # fetch_iter's loop over the same py-tx client calls and record conversion, minus that.
        start_time = cp.update_time if cp is not None else None
        cursor = self.client.get_threat_updates(
            self.api.collab.privacy_group,
            start_time=start_time,
            page_size=100,
            fields=ThreatUpdateJSON.te_threat_updates_fields(),
            decode_fn=ThreatUpdateJSON,
        )
        highest = start_time or 0
        for batch in cursor:
            if not batch:
                continue
            highest = max(highest, max(u.time for u in batch))
            page = Page(
                records=[],
                checkpoint={"update_time": int(highest), "last_fetch_time": int(time.time())},
            )
            for u in batch:
                rec = FBThreatExchangeIndicatorRecord.from_threatexchange_json(
                    self.client.app_id, u
                )
                page.records.append(_te_record(u.threat_type, u.indicator, rec))
            yield page

    def feedback(
        self, records: list[StoredRecord], verdict: str, tags: list[str]
    ) -> dict[str, Any]:
        reaction = TE_REACTIONS[verdict]
        ids = sorted({int(d) for r in records for d in r.meta.get("descriptor_ids", [])})
        if not ids:
            raise ExchangeError(
                "no ThreatExchange descriptor is known for that hash", code="exchange.no_record"
            )
        for descriptor_id in ids:
            _, err, body = self.client.react_to_threat_descriptor(  # type: ignore[no-untyped-call]
                descriptor_id, reaction
            )
            if err is not None or (isinstance(body, dict) and "error" in body):
                raise ExchangeError(
                    f"ThreatExchange refused the reaction on descriptor {descriptor_id}",
                    code="exchange.feedback_failed",
                )
        return {"sent": len(ids), "reaction": reaction}


def _te_record(type_str: str, indicator: str, rec: Any) -> Record:
    out = Record(key=f"{type_str}:{indicator.strip().lower()}")
    negative = state.SignalOpinionCategory.NEGATIVE_CLASS
    if rec is None or all(o.category == negative for o in rec.opinions):
        out.removed = True
    else:
        out.meta = {
            "descriptor_ids": sorted(
                {
                    int(o.descriptor_id)
                    for o in rec.opinions
                    if o.descriptor_id is not None and o.descriptor_id >= 0
                }
            )
        }
    mapped = TE_TYPES.get(type_str)
    if mapped:
        out.hashes.append((mapped, indicator))
    else:
        out.unknown.append(type_str)
    return out


# -- local file -----------------------------------------------------------------------------
FILE_TYPES = {
    "pdq": "pdq",
    "md5": "md5",
    "video_md5": "video_md5",
    "sha256": "sha256",
    "video_sha256": "sha256",
    # py-tx's vPDQ extension writes "vpdq <JSON list of 'pdq_hex,quality,timestamp'>".
    "vpdq": "vpdq",
}


class FileAdapter:
    snapshot: ClassVar[bool] = True

    def __init__(self, spec: ExchangeSpec) -> None:
        filename = spec.config.get("filename")
        if not filename:
            raise ExchangeError("a file exchange needs --file PATH", code="exchange.bad_config")
        self.path = Path(str(filename))
        signal_type = spec.config.get("signal_type")
        self.api = LocalFileSignalExchangeAPI(
            FileCollaborationConfig(
                name=spec.name,
                filename=str(self.path),
                signal_type=str(signal_type) if signal_type else None,
            )
        )

    def is_stale(self, checkpoint: dict[str, Any]) -> bool:
        return True

    def pages(self, checkpoint: dict[str, Any] | None) -> Iterator[Page]:
        # py-tx asserts these (and an assert is no check under python -O): say it plainly.
        if not self.path.is_file():
            raise ExchangeError(
                f"exchange file {str(self.path)!r} does not exist or is not a file",
                code="exchange.file_missing",
            )
        for delta in self.api.fetch_iter([], None):
            page = Page(records=[], checkpoint=None)
            for type_str, signal in delta.updates:
                rec = Record(key=f"{type_str}:{signal.strip().lower()}")
                mapped = FILE_TYPES.get(type_str.strip().lower())
                if mapped:
                    rec.hashes.append((mapped, signal))
                else:
                    rec.unknown.append(type_str[:40])
                page.records.append(rec)
            yield page

    def feedback(
        self, records: list[StoredRecord], verdict: str, tags: list[str]
    ) -> dict[str, Any]:
        raise unsupported_feedback("file")


# -- dignity partner feed -------------------------------------------------------------------
class DignityFeedAdapter:
    snapshot: ClassVar[bool] = False

    def __init__(self, spec: ExchangeSpec) -> None:
        key = _need_credentials(spec, "the partner API key of the other instance")
        if not spec.base_url:
            raise ExchangeError(
                "a dignity_feed exchange needs --url (the other instance's base URL)",
                code="exchange.bad_config",
            )
        collab = DignityFeedCollabConfig(name=spec.name, base_url=spec.base_url)
        self.api = DignityFeedSignalExchangeAPI(collab, key, timeout=spec.timeout_s)

    def is_stale(self, checkpoint: dict[str, Any]) -> bool:
        return False  # feed cursors never expire

    def pages(self, checkpoint: dict[str, Any] | None) -> Iterator[Page]:
        cp = DignityFeedCheckpoint(int(checkpoint["cursor"])) if checkpoint else None
        for delta in self.api.fetch_iter([], cp):
            page = Page(records=[], checkpoint={"cursor": int(delta.checkpoint.cursor)})
            for problem, ident in self.api.rejected:
                page.errors["bad_item"] += 1
                page.error_samples.append({"type": "bad_item", "record": ident, "message": problem})
            for item in delta.updates.values():
                assert item is not None
                rec = Record(key=item.id, removed=item.status == "withdrawn")
                if item.signal in ("pdq", "md5", "sha256", "video_md5"):
                    rec.hashes.append((item.signal, item.value))
                elif item.signal == "vpdq":
                    # A withdrawal names no frames: the record's key is what it withdraws.
                    if item.frames:
                        rec.hashes.append(("vpdq", _feed_vpdq(item)))
                else:
                    rec.unknown.append(item.signal[:40])
                page.records.append(rec)
            yield page

    def feedback(
        self, records: list[StoredRecord], verdict: str, tags: list[str]
    ) -> dict[str, Any]:
        raise unsupported_feedback("dignity_feed")


def _feed_vpdq(item: DignityFeedItem) -> str:
    """An active feed vpdq item's frames as the vPDQ text the exchange service reads."""
    from dignity.video.formats import frames_from_json, vpdq_text

    try:
        return vpdq_text(frames_from_json(item.frames))
    except DignityError as exc:
        raise ExchangeError(
            f"feed item {item.id!r} has bad frames: {exc}", code="exchange.protocol"
        ) from exc


ADAPTERS: dict[str, Callable[[ExchangeSpec], Adapter]] = {
    "stopncii": StopNCIIAdapter,
    "ncmec": NCMECAdapter,
    "fb_threatexchange": ThreatExchangeAdapter,
    "file": FileAdapter,
    "dignity_feed": DignityFeedAdapter,
}


def build_adapter(spec: ExchangeSpec) -> Adapter:
    return ADAPTERS[spec.kind](spec)
