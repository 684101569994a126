"""Runtime settings, read from ``DIGNITY_*`` environment variables; each is declared once here.

Everything that an operator may tune lives in :class:`Settings` with its help text, so the CLI,
the service and the docs all describe the same knob the same way. Library code receives a
``Settings`` value rather than reading the environment itself, which keeps tests hermetic.
:func:`load_settings` reads them and turns any refusal into a :class:`ConfigError` whose code
names the setting (``config.max_bytes``), so a typo in the environment is one clear line and
exit status 3, never a traceback. List settings take a JSON list or comma-separated names.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from dignity.errors import BadRequest


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dignity"


class Settings(BaseSettings):
    """All of dignity's settings. Environment: ``DIGNITY_<NAME>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="DIGNITY_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory for the default SQLite database and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database; default: an SQLite file in data_dir.",
    )
    max_bytes: int = Field(
        default=50 * 1024 * 1024,
        gt=0,
        description="Largest media file accepted, in bytes; larger input is refused unread.",
    )
    max_pixels: int = Field(
        default=100_000_000,
        gt=0,
        description="Largest image accepted, in pixels (width x height), checked from the header.",
    )
    max_frames: int = Field(
        default=10_000,
        gt=0,
        description="Most frames or pages an image file (GIF, TIFF, WebP, APNG) may hold; counted "
        "from its structure before decoding (media.too_many_frames).",
    )
    max_decode_bytes: int = Field(
        default=512 * 1024 * 1024,
        gt=0,
        description="Most memory one image decode may take, in bytes, estimated from its mode, bit "
        "depth and size before any pixel is read (media.too_costly).",
    )
    decode_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A decode in the decode pool taking longer is stopped: its worker process is "
        "killed and replaced (media.decode_timeout).",
    )
    decode_workers: int = Field(
        default=0,
        ge=0,
        description="Decode worker processes per server process for risky images (not baseline "
        "JPEGs); 0: as many as max_concurrency.",
    )
    pdq_min_quality: int = Field(
        default=50,
        ge=0,
        le=100,
        description="Images whose PDQ quality is below this get no PDQ entry and no PDQ match.",
    )
    match_dihedral: bool = Field(
        default=True,
        description="Match all 8 rotations/mirrors of a query image, so turned copies are found.",
    )
    match_regions: bool = Field(
        default=True,
        description=(
            "Also match the pictures found inside an uploaded image (screenshots, collages, "
            "memes, chat forwards, bordered reposts): up to 8 regions, PDQ each."
        ),
    )
    # -- video -------------------------------------------------------------------------
    video_max_seconds: float = Field(
        default=3 * 3600.0,
        gt=0,
        description="Longest video accepted, in seconds; refused from the container's header.",
    )
    video_max_bytes: int = Field(
        default=1024 * 1024 * 1024,
        gt=0,
        description="Largest video file accepted, in bytes (images keep max_bytes).",
    )
    video_max_pixels: int = Field(
        default=40_000_000,
        gt=0,
        description="Largest video frame accepted, in pixels (width x height).",
    )
    video_decode_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Decoding one video taking longer than this is stopped (media.decode_timeout).",
    )
    video_sync_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest video /v1/scan and /v1/hash take in the request itself (else 413).",
    )
    video_signal_frames: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Frames of a video the classifiers and derivative detection look at, at most.",
    )
    video_nudity_threshold: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="A sampled video frame scoring this or more counts in the nudity.share fact.",
    )
    # -- HTTP service ------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `dignity serve` listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port `dignity serve` listens on.")
    rate_per_minute: int = Field(
        default=600, gt=0, description="Requests per minute per API key (unless the key says)."
    )
    max_concurrency: int = Field(
        default=4,
        gt=0,
        description="Heavy requests (hashing, matching, imports) one process runs at once.",
    )
    key_max_in_flight: int = Field(
        default=256,
        gt=0,
        description="Requests one API key may have in flight in one process; past it, 503 at "
        "once (server.busy, Retry-After).",
    )
    address_max_in_flight: int = Field(
        default=16,
        gt=0,
        description="Requests one client address may have in flight on the anonymous routes "
        "(portal, takedown intake, appeals) in one process; past it, 503 at once.",
    )
    lookup_concurrency: int = Field(
        default=8,
        gt=0,
        description="Lookups by hash (/m/lookup, /v1/match with hashes) one process runs at once, "
        "apart from the heavy slots, so they never wait behind decodes.",
    )
    queue_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a heavy request waits for a slot before 503."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Heavy requests taking longer are answered with 503."
    )
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection whose request headers are not all in this long after it "
        "opened (or after its previous response) is closed.",
    )
    http_body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A request whose body is not all in this long after its headers is closed.",
    )
    http_keepalive_s: float = Field(
        default=5.0, gt=0, description="An idle keep-alive connection is closed after this long."
    )
    http_max_connections: int = Field(
        default=2048,
        gt=0,
        description="Open connections (or requests in flight) per server process; past it new "
        "requests are answered 503 at once.",
    )
    http_max_header_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Largest request line plus headers, in bytes (a larger one is answered 400).",
    )
    index_refresh_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a server replays the change log (bank changes reach it by then).",
    )
    max_import_bytes: int = Field(
        default=1024 * 1024 * 1024, gt=0, description="Largest bulk import body, in bytes."
    )
    # -- background jobs (dignity.worker) ----------------------------------------------
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (amqp://... for RabbitMQ, redis://...); unset: the embedded "
        "runner, which reads queued jobs from the database and needs no broker.",
    )
    job_concurrency: int = Field(
        default=2,
        ge=0,
        description="Embedded runner threads in each `dignity serve` process (0: serve runs no "
        "jobs; a `dignity worker` does).",
    )
    job_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often an idle embedded runner looks for jobs queued by other processes.",
    )
    job_lease_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a job's claim holds without a heartbeat; a job whose worker "
        "died runs again after this.",
    )
    job_recovery_s: float = Field(
        default=15.0,
        gt=0,
        description="How often the engine re-sends queued jobs the broker lost and settles "
        "jobs out of attempts.",
    )
    job_redispatch_s: float = Field(
        default=120.0,
        gt=0,
        description="A queued job sent to the broker and not claimed after this is sent again.",
    )
    periodic_queue: str = Field(
        default="default",
        min_length=1,
        max_length=32,
        description="Celery only: the queue Celery beat sends the periodic ticks to (a worker "
        "must take jobs from it).",
    )
    # -- webhook delivery (outbox) -------------------------------------------------------
    outbox_workers: int = Field(
        default=2, ge=0, description="Delivery threads per server process (0: deliver nothing)."
    )
    outbox_poll_s: float = Field(
        default=1.0, gt=0, description="How often idle delivery threads look for due events."
    )
    outbox_lease_s: float = Field(
        default=60.0, gt=0, description="How long a claimed delivery is held (> webhook timeout)."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    outbox_backoff_base_s: float = Field(default=30.0, gt=0, description="First retry delay.")
    outbox_backoff_cap_s: float = Field(default=3600.0, gt=0, description="Longest retry delay.")
    outbox_max_attempts: int = Field(
        default=8, ge=1, description="Attempts before a delivery is dead-lettered."
    )
    import_timeout_s: float = Field(
        default=900.0, gt=0, description="Time limit for one bulk import request."
    )
    url_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Budget for one fetch: hashing by URL, and content from the platform "
        "(previews, hashing removed content).",
    )
    url_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="If set, hashing by URL may fetch only from these hosts (*.example.com ok).",
    )
    policy_file: Path | None = Field(
        default=None,
        description="Policy (rules as TOML) for scan decisions; default: the shipped policy.",
    )
    nudity_classifier: Literal["opennsfw", "nudenet", "none"] = Field(
        default="opennsfw",
        description="Nudity model: opennsfw (default), nudenet (extra dignity[nudenet]), none.",
    )
    signals_disabled: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Signal plug-ins (by name, e.g. watermark) not to run during scans; a name "
        "no installed plug-in has is refused (config.signals_disabled).",
    )
    c2pa_trust_list: bool = Field(
        default=True,
        description="Trust C2PA signers that chain to the bundled C2PA conformance trust list "
        "(manifest state 'trusted', not only 'valid').",
    )
    c2pa_trust_anchors: Path | None = Field(
        default=None,
        description="A PEM file of further C2PA trust anchors (your own or a newer trust list).",
    )

    @field_validator(
        "url_allow_hosts",
        "signals_disabled",
        "takedown_escalate_h",
        "retro_remove_banks",
        mode="before",
    )
    @classmethod
    def _list_from_text(cls, value: Any) -> Any:
        """A list setting from the environment: a JSON list (``["a","b"]``) or names separated
        by commas (``a,b``), as operators write them in shell and compose files."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
        return [item.strip() for item in text.split(",") if item.strip()]

    # -- index at scale (issue 8) --
    index_snapshot: bool = Field(
        default=True,
        description=(
            "Keep a snapshot of the PDQ index in data_dir/index, so a restart of the service "
            "reads it and replays newer changes instead of every entry (a damaged, stale or "
            "foreign snapshot is ignored)."
        ),
    )
    # -- edited-derivative detection (issue 7) --
    # -- victim portal and cases (issue 5) --
    portal_enabled: bool = Field(
        default=True,
        description="Serve the victim portal (hashing page, accountless case API) at /portal.",
    )
    portal_bank: str = Field(
        default="cases",
        description="Bank that case hashes go into (created as a block bank on first use).",
    )
    case_max_hashes: int = Field(
        default=200, ge=1, le=10000, description="Most hashes one case may submit at once."
    )
    case_pin_attempts: int = Field(
        default=5, ge=1, description="Wrong PINs in a row before a case is locked."
    )
    case_lockout_s: float = Field(
        default=900.0, gt=0, description="How long a case stays locked after too many wrong PINs."
    )
    feed_batch_s: float = Field(
        default=600.0,
        ge=0,
        description="The partner feed publishes case hashes in batches: a batch closes this many "
        "seconds after its oldest change (or at feed_batch_items), once it mixes "
        "feed_batch_min_cases cases.",
    )
    feed_batch_items: int = Field(
        default=500, ge=1, description="Changes that close a feed batch before feed_batch_s."
    )
    feed_batch_min_cases: int = Field(
        default=3, ge=1, description="Fewest cases a feed batch mixes before it may close."
    )
    feed_batch_max_hold_s: float = Field(
        default=86400.0,
        ge=0,
        description="Longest a change waits for enough cases; then its batch closes anyway.",
    )
    portal_ip_failures_per_hour: int = Field(
        default=20, ge=1, description="Wrong case number/PIN tries per client address an hour."
    )
    portal_ip_cases_per_hour: int = Field(
        default=30, ge=1, description="Cases one client address may open an hour."
    )
    portal_client_ip_header: str = Field(
        default="",
        description="Behind a reverse proxy: header holding the client address (e.g. "
        "X-Forwarded-For), read only from a peer in trusted_proxies; the rightmost address "
        "that is not itself a trusted proxy is the client. Empty: the TCP peer.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or CIDRs of the reverse proxies in front (e.g. "
        "127.0.0.1/32,10.0.0.0/8). Only a TCP peer in these may name the client address in "
        "portal_client_ip_header; empty: no peer may, the header is ignored.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str) -> str:
        import ipaddress

        for item in value.split(","):
            if item.strip():
                ipaddress.ip_network(item.strip(), strict=False)  # ValueError: refused at start
        return value

    # -- hash exchanges (issue 5) --
    exchange_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often `dignity exchange run` fetches each enabled exchange, unless the "
        "exchange sets its own interval.",
    )
    exchange_lease_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a fetch holds its exchange between two pages; an exchange whose "
        "fetcher died is free again after this.",
    )
    exchange_timeout_s: float = Field(
        default=60.0, gt=0, description="Per-request timeout of the dignity_feed client."
    )
    exchange_secret_key: str | None = Field(
        default=None,
        repr=False,
        description="Fernet key that encrypts stored exchange credentials (same on every host); "
        "default: the file exchange-secret.key in data_dir, created on first use.",
    )
    # -- takedown workflow, review UI, notices, transparency (issue 6) --
    platform_name: str = Field(
        default="this platform",
        description="The platform's name, as statements of reasons and receipts show it.",
    )
    content_url_pattern: str | None = Field(
        default=None,
        description="Regular expression with a named group `content_id` that turns a URL on the "
        "platform into its content id (e.g. https://example\\.com/p/(?P<content_id>\\w+)). "
        "Unset: reported URLs are kept as given and only content ids resolve.",
    )
    preview_url_template: str | None = Field(
        default=None,
        description="Where the review UI fetches a preview of content from the platform, with "
        "{content_id} in it (an internal URL the operator trusts). Unset: no previews.",
    )
    takedown_deadline_h: float = Field(
        default=48.0, gt=0, description="Hours from a valid takedown request to its deadline."
    )
    takedown_escalate_h: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [24.0, 36.0],
        description="Hours after a valid request at which an open one is escalated.",
    )
    takedown_bank: str = Field(
        default="takedowns",
        description="Block bank that receives the hashes of content removed after review.",
    )
    sweep_pdq_threshold: int = Field(
        default=24,
        ge=0,
        le=63,
        description="Largest PDQ distance at which an earlier scan counts as a known copy of "
        "removed content (exact md5/sha256 copies always count).",
    )
    scan_log_retention_days: int = Field(
        default=365,
        ge=1,
        description="Days the scan log keeps each scan's hashes (what copy sweeps search).",
    )
    retro_remove_banks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Block banks whose retro-matches (past uploads found by a new entry) are "
        "removed at once, as a reviewer's removal would be; other banks' go to review.",
    )
    appeal_window_days: int = Field(
        default=184,
        ge=183,
        description="Days an uploader may appeal a removal (DSA Art. 20: at least six months).",
    )
    session_idle_s: float = Field(
        default=1800.0, gt=0, description="Review UI sessions end after this long unused."
    )
    session_max_s: float = Field(
        default=8 * 3600.0, gt=0, description="Review UI sessions end this long after sign-in."
    )
    unfounded_flag_after: int = Field(
        default=3,
        ge=1,
        description="Requests rejected as manifestly unfounded (within a year) after which a "
        "requester is flagged (DSA Art. 23).",
    )
    takedown_ip_requests_per_hour: int = Field(
        default=20, ge=1, description="Takedown requests one client address may file an hour."
    )
    takedown_check_s: float = Field(
        default=60.0,
        gt=0,
        description="How often a serving process escalates takedown requests near their deadline.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'dignity.sqlite3'}"


class ConfigError(BadRequest):
    """A setting that cannot be used: its code is ``config.<field>``, one per setting."""

    codes: ClassVar[tuple[str, ...]] = tuple(f"config.{name}" for name in Settings.model_fields)


# pydantic-settings names the field only inside its message.
_SOURCE_FIELD = re.compile(r'field "?(\w+)"?')


def config_error(field: str, message: str) -> ConfigError:
    """The refusal of setting ``field`` (``DIGNITY_<FIELD>``), ``message`` saying why."""
    return ConfigError(f"DIGNITY_{field.upper()}: {message}", code=f"config.{field}", field=field)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``); a refused value is a
    :class:`ConfigError` naming the first bad setting, never pydantic's multi-line report."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ("",)
        field = str(loc[0])
        if field not in Settings.model_fields:
            raise
        got = first.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
        message = str(first.get("msg", "not valid")).removeprefix("Value error, ")
        raise config_error(field, f"{message}{shown}") from None
    except SettingsError as exc:
        found = _SOURCE_FIELD.search(str(exc))
        if found is None or found.group(1) not in Settings.model_fields:
            raise
        raise config_error(found.group(1), "cannot be parsed") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings read from the environment (tests build their own instead)."""
    return load_settings()
