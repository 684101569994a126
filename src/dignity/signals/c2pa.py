"""C2PA provenance check: what a file's Content Credentials say about how it was made.

The manifest store is read from the uploaded bytes in memory with the c2pa-python library
(c2pa-rs underneath), configured never to touch the network: remote manifests are not fetched,
OCSP is not asked, and the library's own HTTP allow-list is empty, so a file that points at a
manifest elsewhere is reported as ``remote`` instead. The report gives the validation state, the
claim generator and every IPTC digital source type declared in the actions of the active manifest
and, recursively, of the ingredient manifests it references; an AI source type becomes evidence
even when the manifest failed validation, since it is still the file saying it was AI-made, and
the evidence then says so. The generator is also recognised by name: a manifest whose claim
generator, action ``softwareAgent`` or vendor action parameters name a product that only makes
images (the table in ``data/c2pa_generators.toml``, each row with its source) is AI evidence with
the vendor named, which is how older manifests (Bing Image Creator's, Firefly's first ones)
declare generation. Signers are checked against trust anchors: the C2PA conformance trust list
bundled in ``data/C2PA-TRUST-LIST.pem`` and any PEM file named by ``DIGNITY_C2PA_TRUST_ANCHORS``,
so a manifest is ``trusted`` when its signer chains to one and ``valid`` when it is intact but
signed by anyone else. Most uploads carry no C2PA data at all, so a byte scan for JUMBF boxes
or an XMP provenance reference (about 0.7 ms per MB of file) decides whether the library is needed.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import threading
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, BinaryIO, Final

from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import (
    AI_SOURCE_TYPES,
    Evidence,
    ProvenanceCheck,
    ProvenanceReport,
    source_type_term,
)

try:
    import c2pa as _c2pa  # type: ignore[import-untyped]
except Exception:  # ImportError, or OSError when its native library cannot be loaded
    _c2pa = None

__all__ = [
    "C2paCheck",
    "KnownGenerator",
    "create",
    "known_generators",
    "may_carry_c2pa",
    "report_from_store",
    "trust_anchors",
]

# Pillow's format names and the MIME types c2pa reads them as. BMP is absent: C2PA defines no
# way to embed a manifest in one, and the library refuses the type.
_MIME: Final = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
}

# Remote fetching and OCSP are the two network paths when reading; the empty host list makes
# the library's HTTP resolver refuse every URL too, so anything added later stays offline.
_READER_SETTINGS: Final[dict[str, dict[str, Any]]] = {
    "core": {"allowed_network_hosts": []},
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}

# Every embedded manifest store is a JUMBF superbox, whose box type "jumb" is stored in the
# clear by each container c2pa reads (JPEG repeats it in every APP11 segment; PNG caBX, WebP
# C2PA and TIFF keep the store in one piece), compressed manifests included: their Brotli
# stream sits inside the store box. A remote manifest is referenced from XMP as
# dcterms:provenance; matching the bare local name also catches other namespace prefixes.
_JUMBF_MARKER: Final = b"jumb"
_REMOTE_MARKER: Final = b"provenance"
# GIF cuts extension data into sub-blocks of at most 255 bytes, each after a length byte, so
# either marker may be split in two (in XMP this happens to ordinary files); the application
# extensions that carry a manifest or XMP are named instead.
_GIF_MARKERS: Final = (b"C2PA_GIF", b"XMP DataXMP")
_XMP_KEYS: Final = ("xmp", "XML:com.adobe.xmp")

_ACTIONS_LABELS: Final = frozenset({"c2pa.actions", "c2pa.actions.v2"})
# Validation codes that leave a manifest valid but not trusted (its signer chains to no anchor).
_TRUST_CODES: Final = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted"})
_GENERATOR_FIELDS: Final = ("claim_generator", "software_agent", "action_parameter")
_FIELD_WORDS: Final = {
    "claim_generator": "claim generator",
    "software_agent": "softwareAgent",
    "action_parameter": "action parameter",
}
# After a generator's name: a version, a library list or a model ("ChatGPT c2pa-rs/0.28.4").
_NAME_ENDS: Final = " /-.(:,;"
_PEM_CERT: Final = "-----BEGIN CERTIFICATE-----"

# Manifests are attacker-written: bound what is copied into the report.
_MAX_TEXT: Final = 200
_MAX_ITEMS: Final = 32
_MAX_MANIFESTS: Final = 1000
_URL: Final = re.compile(r"https?://[^\s\"'<>()]+")


def may_carry_c2pa(media: Media) -> bool:
    """Whether ``media`` could hold a C2PA manifest or a reference to one; False means that
    the library would certainly find nothing, so it need not be asked."""
    data = media.data
    if _JUMBF_MARKER in data or _REMOTE_MARKER in data:
        return True
    if media.format == "GIF" and any(marker in data for marker in _GIF_MARKERS):
        return True
    # A PNG's XMP may sit in a zlib-compressed iTXt chunk, which Pillow has inflated. c2pa does
    # not read those today; looking costs nothing and keeps this check ahead of the library.
    for key in _XMP_KEYS:
        xmp = media.info.get(key)
        if isinstance(xmp, bytes) and _REMOTE_MARKER in xmp:
            return True
        if isinstance(xmp, str) and "provenance" in xmp:
            return True
    return False


@dataclass(frozen=True)
class KnownGenerator:
    """One row of ``data/c2pa_generators.toml``: a generator and the string that names it."""

    vendor: str
    product: str
    field: str
    prefix: str
    seen: bool
    source: str

    @property
    def name(self) -> str:
        """The generator as people call it: "Adobe Firefly", "ChatGPT" stays "OpenAI ChatGPT"."""
        if self.vendor.lower() in self.product.lower():
            return self.product
        return f"{self.vendor} {self.product}"

    def names(self, text: str) -> bool:
        """Whether ``text`` (a claim generator, softwareAgent or parameter key) is this one's."""
        clean = _normal(text)
        return clean.startswith(self.prefix) and (
            len(clean) == len(self.prefix) or clean[len(self.prefix)] in _NAME_ENDS
        )


@functools.cache
def known_generators() -> tuple[KnownGenerator, ...]:
    """The packaged table, checked: every row complete, its field known, its source a URL."""
    text = resources.files("dignity.signals").joinpath("data/c2pa_generators.toml").read_text()
    rows = tomllib.loads(text).get("generator", [])
    found = []
    for number, row in enumerate(rows, 1):
        try:
            generator = KnownGenerator(
                vendor=str(row["vendor"]),
                product=str(row["product"]),
                field=str(row["field"]),
                prefix=_normal(str(row["prefix"])),
                seen=bool(row["seen"]),
                source=str(row["source"]),
            )
        except KeyError as exc:
            raise ValueError(f"c2pa_generators.toml row {number}: no {exc.args[0]}") from None
        if generator.field not in _GENERATOR_FIELDS or not generator.prefix:
            raise ValueError(f"c2pa_generators.toml row {number}: bad field or prefix")
        if not generator.source.startswith("https://"):
            raise ValueError(f"c2pa_generators.toml row {number}: the source is not a URL")
        found.append(generator)
    return tuple(found)


def trust_anchors(*, bundled: bool = True, extra: str | None = None) -> str | None:
    """The PEM text to verify signers against: the bundled C2PA conformance trust list and/or
    ``extra`` (the contents of a PEM file); None when there is neither."""
    parts = []
    if bundled:
        parts.append(
            resources.files("dignity.signals").joinpath("data/C2PA-TRUST-LIST.pem").read_text()
        )
    if extra is not None:
        parts.append(extra)
    return "\n".join(parts) if parts else None


def report_from_store(store: Mapping[str, Any]) -> ProvenanceReport:
    """The report for a manifest store as ``Reader.json()`` gives it (parsed)."""
    found = store.get("manifests")
    manifests: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    label = store.get("active_manifest")
    active = manifests.get(label) if isinstance(label, str) else None
    if not isinstance(label, str) or not isinstance(active, Mapping):
        broken = _empty("invalid")
        broken["error"] = "the manifest store has no active manifest"
        broken["validation_codes"] = _failure_codes(store)
        return ProvenanceReport(data=broken)

    own = _unique(_source_types(active))
    ingredients = list(_ingredient_manifests(label, manifests))
    from_ingredients = _unique(term for manifest in ingredients for term in _source_types(manifest))
    terms = _unique([*own, *from_ingredients])[:_MAX_ITEMS]
    codes = _failure_codes(store)
    raw_state = store.get("validation_state")
    failed = [c for c in codes if c not in _TRUST_CODES]
    if raw_state == "Trusted":
        state = "trusted"
    elif raw_state == "Invalid" and failed:
        state = "invalid"
    else:
        # "Valid"; an "Invalid" whose only failures are untrusted signers (some library
        # versions report those as failures); and older stores, which carry only the list.
        state = "invalid" if failed else "valid"

    generator = _claim_generator(active)
    named = _named_generator(active, ingredients)
    data: dict[str, Any] = {
        "state": state,
        "claim_generator": generator,
        "digital_source_types": terms,
        "validation_codes": codes,
        "active_manifest": _text(label),
        "validation_state": _text(raw_state) if isinstance(raw_state, str) else None,
        "signer": _signer(active),
        "vendor": named[0].vendor if named else None,
        "generator": named[0].name if named else None,
    }

    ai = [t for t in terms if t in AI_SOURCE_TYPES]
    if not ai and named is None:
        return ProvenanceReport(data=data)
    if state in ("valid", "trusted"):
        standing = state
    else:
        listed = ", ".join(failed)
        standing = f"invalid: it failed validation{f' ({listed})' if listed else ''}"
    if ai:
        where = "" if any(t in AI_SOURCE_TYPES for t in own) else " in an ingredient's manifest"
        detail = (
            f"C2PA manifest ({standing}) declares digitalSourceType {', '.join(ai)}{where}"
            f" (claim generator: {generator or 'not stated'})"
        )
        if named is not None:
            detail += f"; made with {_naming(named)}"
    else:
        assert named is not None
        detail = f"C2PA manifest ({standing}) names the AI generator {_naming(named)}"
    return ProvenanceReport(data=data, evidence=(Evidence("c2pa", detail),))


class C2paCheck:
    """Reads C2PA manifests offline; see the module docstring for what it reports.
    ``anchors`` is the PEM text of the trust anchors (None: no signer is trusted)."""

    name = "c2pa"
    version = "2"

    def __init__(self, anchors: str | None = None) -> None:
        self._settings: dict[str, Any] = {
            **_READER_SETTINGS,
            # With no anchors every signer is reported untrusted: still "valid", never "trusted".
            "verify": {**_READER_SETTINGS["verify"], "verify_trust": True},
        }
        if anchors is not None:
            self._settings["trust"] = {"trust_anchors": anchors}
        self._lock = threading.Lock()
        self._context: Any = None
        self._context_pid = 0

    def check(self, media: Media) -> ProvenanceReport:
        if _c2pa is None:
            data = _empty("none")
            data["error"] = "c2pa-python is not installed"
            return ProvenanceReport(data=data)
        try:
            mime = _MIME.get(media.format)
            if mime is None or not may_carry_c2pa(media):
                return ProvenanceReport(data=_empty("none"))
            return self._read(mime, media.data)
        except Exception as exc:  # a hostile file must never take the scan down
            data = _empty("invalid")
            data["error"] = _text(f"{type(exc).__name__}: {exc}")
            return ProvenanceReport(data=data)

    def check_stream(self, mime: str, stream: BinaryIO) -> ProvenanceReport:
        """The report for a seekable file that is not decoded as an image (a video: MP4 and
        MOV carry their manifest in a ``uuid`` box), read from the stream, never copied."""
        if _c2pa is None:
            data = _empty("none")
            data["error"] = "c2pa-python is not installed"
            return ProvenanceReport(data=data)
        try:
            return self._read(mime, stream)
        except Exception as exc:  # a hostile file must never take the scan down
            data = _empty("invalid")
            data["error"] = _text(f"{type(exc).__name__}: {exc}")
            return ProvenanceReport(data=data)

    def _read(self, mime: str, data: bytes | BinaryIO) -> ProvenanceReport:
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        try:
            # A Reader per call over a shared Context, which the library guards for
            # concurrent use (its own default Context is shared by every thread).
            reader = _c2pa.Reader.try_create(mime, stream, None, self._reader_context())
            if reader is None:
                return ProvenanceReport(data=_empty("none"))
            with reader:
                text = reader.json()
        except _c2pa.C2paError as exc:
            message = str(exc)
            if isinstance(exc, _c2pa.C2paError.RemoteManifest) or message.startswith("Remote"):
                out = _empty("remote")
                url = _URL.search(message)
                out["remote_url"] = _text(url.group(0)) if url else None
                return ProvenanceReport(data=out)
            out = _empty("invalid")
            out["error"] = _text(message)
            return ProvenanceReport(data=out)
        store = json.loads(text)
        if not isinstance(store, Mapping):
            out = _empty("invalid")
            out["error"] = "the manifest store is not a JSON object"
            return ProvenanceReport(data=out)
        return report_from_store(store)

    def _reader_context(self) -> Any:
        # Made on first use and again in a forked child: the library refuses, by design,
        # native handles that another process created.
        pid = os.getpid()
        if self._context is not None and self._context_pid == pid:
            return self._context
        with self._lock:
            if self._context is None or self._context_pid != pid:
                self._context = _c2pa.Context.from_dict(self._settings)
                self._context_pid = pid
            return self._context


def create(settings: Settings) -> list[ProvenanceCheck]:
    """The C2PA check, or nothing where c2pa-python (or its native library) is missing.
    Offline reading is not optional; the trust anchors are (see the module docstring)."""
    if _c2pa is None:
        return []
    extra = None
    if settings.c2pa_trust_anchors is not None:
        from dignity.signals.runner import SignalConfigError  # the runner imports the checks

        path = settings.c2pa_trust_anchors
        try:
            extra = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SignalConfigError(
                f"DIGNITY_C2PA_TRUST_ANCHORS: cannot read {str(path)!r}: {exc}"
            ) from None
        if _PEM_CERT not in extra:
            raise SignalConfigError(
                f"DIGNITY_C2PA_TRUST_ANCHORS: {str(path)!r} holds no PEM certificate"
            )
    anchors = trust_anchors(bundled=settings.c2pa_trust_list, extra=extra)
    return [C2paCheck(anchors)]


def _empty(state: str) -> dict[str, Any]:
    return {
        "state": state,
        "claim_generator": None,
        "digital_source_types": [],
        "validation_codes": [],
        "vendor": None,
        "generator": None,
    }


def _normal(text: str) -> str:
    # "Adobe_Firefly" and "Microsoft_Responsible_AI" are how claim_generator spells names.
    return " ".join(text.replace("_", " ").lower().split())


def _generator_names(manifest: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, string) for every string in ``manifest`` that can name its generator."""
    value = manifest.get("claim_generator")
    if isinstance(value, str):
        yield "claim_generator", value
    for info in _dicts(manifest.get("claim_generator_info")):
        if isinstance(info.get("name"), str):
            yield "claim_generator", info["name"]
    for assertion in _dicts(manifest.get("assertions")):
        label = assertion.get("label")
        body = assertion.get("data")
        if not isinstance(label, str) or label.split("__", 1)[0] not in _ACTIONS_LABELS:
            continue
        if not isinstance(body, Mapping):
            continue
        for action in _dicts(body.get("actions")):
            agent = action.get("softwareAgent")
            if isinstance(agent, Mapping):
                agent = agent.get("name")
            if isinstance(agent, str):
                yield "software_agent", agent
            parameters = action.get("parameters")
            if isinstance(parameters, Mapping):
                for key in list(parameters)[:_MAX_ITEMS]:
                    if isinstance(key, str):
                        yield "action_parameter", key


def _named_generator(
    active: Mapping[str, Any], ingredients: list[Mapping[str, Any]]
) -> tuple[KnownGenerator, str, str, bool] | None:
    """The first known generator named in the active manifest, else in an ingredient's:
    (row, field, the string as written, whether it was an ingredient's)."""
    table = known_generators()
    for manifest, inner in [(active, False), *((m, True) for m in ingredients)]:
        for field, text in _generator_names(manifest):
            for row in table:
                if row.field == field and row.names(text):
                    return row, field, _text(text), inner
    return None


def _naming(named: tuple[KnownGenerator, str, str, bool]) -> str:
    row, field, text, inner = named
    where = " in an ingredient's manifest" if inner else ""
    return f"{row.name} ({_FIELD_WORDS[field]} {text!r}{where})"


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                yield item


def _source_types(manifest: Mapping[str, Any]) -> Iterator[str]:
    """IPTC terms in the manifest's actions assertions, templates included when used."""
    for assertion in _dicts(manifest.get("assertions")):
        label = assertion.get("label")
        # Repeated assertions get an instance suffix: c2pa.actions.v2__1.
        if not isinstance(label, str) or label.split("__", 1)[0] not in _ACTIONS_LABELS:
            continue
        body = assertion.get("data")
        if not isinstance(body, Mapping):
            continue
        used: set[str] = set()
        for action in _dicts(body.get("actions")):
            name = action.get("action")
            if isinstance(name, str):
                used.add(name)
            yield from _source_type(action.get("digitalSourceType"))
        # A template gives its source type to every action of its kind ("*": all of them).
        for template in _dicts(body.get("templates")):
            name = template.get("action")
            if name == "*" or (isinstance(name, str) and name in used):
                yield from _source_type(template.get("digitalSourceType"))


def _source_type(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.strip():
        term = _text(source_type_term(value))
        if term:
            yield term


def _ingredient_manifests(active: str, manifests: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every manifest the active one reaches through ingredients, each once, breadth first."""
    seen = {active}
    queue = deque([active])
    while queue:
        manifest = manifests.get(queue.popleft())
        if not isinstance(manifest, Mapping):
            continue
        for ingredient in _dicts(manifest.get("ingredients")):
            for label in _ingredient_labels(ingredient):
                found = manifests.get(label)
                if label in seen or not isinstance(found, Mapping) or len(seen) > _MAX_MANIFESTS:
                    continue
                seen.add(label)
                queue.append(label)
                yield found


def _ingredient_labels(ingredient: Mapping[str, Any]) -> Iterator[str]:
    label = ingredient.get("active_manifest")
    if isinstance(label, str):
        yield label
    # Newer stores also name the ingredient's manifest as a resource identifier.
    data = ingredient.get("manifest_data")
    if isinstance(data, Mapping) and isinstance(data.get("identifier"), str):
        yield data["identifier"]


def _claim_generator(manifest: Mapping[str, Any]) -> str | None:
    value = manifest.get("claim_generator")
    if isinstance(value, str) and value.strip():
        return _text(value)
    parts = []
    for info in _dicts(manifest.get("claim_generator_info")):
        name = info.get("name")
        if isinstance(name, str) and name.strip():
            version = info.get("version")
            parts.append(f"{name}/{version}" if isinstance(version, str) and version else name)
    return _text(" ".join(parts)) if parts else None


def _signer(manifest: Mapping[str, Any]) -> str | None:
    info = manifest.get("signature_info")
    if isinstance(info, Mapping):
        issuer = info.get("issuer")
        if isinstance(issuer, str) and issuer.strip():
            return _text(issuer)
    return None


def _failure_codes(store: Mapping[str, Any]) -> list[str]:
    codes = (s.get("code") for s in _dicts(store.get("validation_status")))
    return _unique(_text(c) for c in codes if isinstance(c, str) and c)[:_MAX_ITEMS]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _text(value: str) -> str:
    """``value`` made safe to show: printable characters only, bounded length."""
    clean = "".join(c if c.isprintable() else " " for c in value[: _MAX_TEXT * 2]).strip()
    return clean[:_MAX_TEXT]
