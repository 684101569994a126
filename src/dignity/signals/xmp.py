"""Provenance check: the IPTC digital source type that a file's XMP packet declares.

Generative tools that follow the IPTC guidance (Adobe Firefly, Midjourney, Google, Microsoft,
Meta, ...) write ``Iptc4xmpExt:DigitalSourceType`` into XMP with a term such as
``trainedAlgorithmicMedia``. This check finds the packet where each container keeps it (JPEG
APP1 plus Extended XMP, PNG ``iTXt XML:com.adobe.xmp``, WebP ``XMP `` chunk, TIFF tag 700, GIF
application extension), parses it with expat, which never builds a tree, after refusing any
packet that declares a DTD or entities (XMP never needs one, so a DOCTYPE is only ever an
attack), and matches properties by namespace URI, never by prefix, because writers bind any
prefix they like. The property may be an attribute of ``rdf:Description`` or an element whose
value is its text or its ``rdf:resource``. :func:`read_properties` is shared with the generator
check, which reads ``xmp:CreatorTool`` and Draw Things' ``exif:UserComment`` the same way.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterable, Mapping
from typing import Final
from xml.parsers import expat

from dignity.errors import MediaError, Refused
from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import (
    AI_SOURCE_TYPES,
    Evidence,
    ProvenanceCheck,
    ProvenanceReport,
    source_type_term,
)

__all__ = [
    "CREATOR_TOOL",
    "DIGITAL_SOURCE_TYPE",
    "XmpCheck",
    "XmpError",
    "clean_text",
    "create",
    "find_packet",
    "packet_text",
    "read_properties",
]

IPTC_EXT_NS: Final = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_NS: Final = "http://ns.adobe.com/xap/1.0/"
XMP_NOTE_NS: Final = "http://ns.adobe.com/xmp/note/"
RDF_NS: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

DIGITAL_SOURCE_TYPE: Final = (IPTC_EXT_NS, "DigitalSourceType")
CREATOR_TOOL: Final = (XMP_NS, "CreatorTool")
_HAS_EXTENDED: Final = (XMP_NOTE_NS, "HasExtendedXMP")

# The standard packet fits one 64 KB JPEG segment; PNG and WebP have no such limit, and
# Extended XMP is reassembled from many segments. Photos rarely carry more than 100 KB.
MAX_PACKET_BYTES: Final = 2 * 1024 * 1024
# A property value longer than this is not a source type or a tool name; it is cut, not read.
_MAX_VALUE_CHARS: Final = 1024 * 1024
_MAX_REPORTED_CHARS: Final = 200
_MAX_JPEG_SEGMENTS: Final = 4096

_JPEG_XMP_ID: Final = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_EXT_ID: Final = b"http://ns.adobe.com/xmp/extension/\x00"
_GIF_XMP_ID: Final = b"XMP DataXMP"

_TERM_MEANINGS: Final = {
    "trainedAlgorithmicMedia": "made by a trained generative model",
    "compositeWithTrainedAlgorithmicMedia": "a composite that includes generative-AI content",
    "algorithmicMedia": "made purely by an algorithm",
}


class XmpError(MediaError, Refused):
    """The packet could not be read: malformed XML, or a DTD/entity declaration refused. The
    XMP check records it as the check's error rather than refusing the media."""

    codes = ("media.bad_xmp",)


def find_packet(media: Media) -> bytes | str | None:
    """The file's main XMP packet as its container stores it, or None when it has none.

    Pillow already extracts it for JPEG, PNG, WebP and TIFF; the original bytes are scanned only
    where Pillow does not look: JPEG files read by Pillow versions that do not fill
    ``info["xmp"]``, and GIF application extensions.
    """
    info = media.info
    for key in ("xmp", "XML:com.adobe.xmp"):
        value = info.get(key)
        if isinstance(value, tuple) and len(value) == 1:  # some Pillow versions, for TIFF
            value = value[0]
        if isinstance(value, bytes | str) and value:
            return value
    if media.format == "JPEG":
        segments = _jpeg_app1_segments(media.data)
        for segment in segments:
            if segment.startswith(_JPEG_XMP_ID):
                return segment[len(_JPEG_XMP_ID) :]
    elif media.format == "GIF":
        return _gif_packet(media.data)
    return None


def read_properties(
    packet: bytes | str, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[str]]:
    """Every value of the ``(namespace URI, local name)`` properties in ``wanted``, in order.

    Raises :class:`XmpError` for a packet that is not well-formed XML or declares a DTD.
    Values found before a syntax error are lost with it: a damaged packet says nothing.
    """
    text = packet_text(packet)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise XmpError("XMP packet declares a DTD or entities; refused unparsed")
    collector = _Collector({(_norm_ns(ns), name): (ns, name) for ns, name in wanted})
    parser = expat.ParserCreate(namespace_separator=" ")
    # Belt and braces behind the text check: expat must not reach any DTD or entity either.
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text
    parser.buffer_text = True
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise XmpError(
            f"XMP packet is not well-formed XML ({expat.ErrorString(exc.code)})"
        ) from exc
    return collector.values


def clean_text(value: str, limit: int = _MAX_REPORTED_CHARS) -> str:
    """``value`` made safe to report: control characters dropped, whitespace collapsed, cut."""
    printable = "".join(ch if ch.isprintable() else " " for ch in value[: limit * 2])
    return " ".join(printable.split())[:limit]


class XmpCheck:
    """Reports the XMP packet's IPTC digital source type and creator tool."""

    name = "xmp"
    version = "1"

    def check(self, media: Media) -> ProvenanceReport:
        data: dict[str, object] = {
            "present": False,
            "digital_source_type": None,
            "creator_tool": None,
        }
        try:
            return self._check(media, data)
        except Exception as exc:  # a check never raises; what went wrong is reported instead
            data["error"] = f"{type(exc).__name__}: {clean_text(str(exc))}"
            return ProvenanceReport(data)

    def _check(self, media: Media, data: dict[str, object]) -> ProvenanceReport:
        packet = find_packet(media)
        if packet is None:
            return ProvenanceReport(data)
        data["present"] = True
        if len(packet) > MAX_PACKET_BYTES:
            data["error"] = f"XMP packet larger than {MAX_PACKET_BYTES} bytes; not read"
            return ProvenanceReport(data)
        try:
            values = read_properties(packet, (DIGITAL_SOURCE_TYPE, CREATOR_TOOL, _HAS_EXTENDED))
        except XmpError as exc:
            data["error"] = exc.message
            return ProvenanceReport(data)
        guid = _first(values, _HAS_EXTENDED)
        if not values.get(DIGITAL_SOURCE_TYPE) and guid and media.format == "JPEG":
            # Writers move properties that do not fit 64 KB to Extended XMP; the main packet
            # names the extension by the GUID that every one of its segments carries.
            extended = _jpeg_extended_packet(media.data, guid)
            if extended is not None:
                try:
                    more = read_properties(extended, (DIGITAL_SOURCE_TYPE, CREATOR_TOOL))
                except XmpError as exc:
                    data["error"] = f"Extended XMP: {exc.message}"
                else:
                    for key, found in more.items():
                        values.setdefault(key, []).extend(found)

        tool = _first(values, CREATOR_TOOL)
        if tool:
            data["creator_tool"] = clean_text(tool)
        terms = [source_type_term(v) for v in values.get(DIGITAL_SOURCE_TYPE, []) if v.strip()]
        if not terms:
            return ProvenanceReport(data)
        # Several values are a contradiction in the file; the generative claim is the one that
        # matters, and a writer does not claim generative AI by accident.
        term = next((t for t in terms if t in AI_SOURCE_TYPES), terms[0])
        data["digital_source_type"] = clean_text(term)
        if term not in AI_SOURCE_TYPES:
            return ProvenanceReport(data)
        detail = f"XMP Iptc4xmpExt:DigitalSourceType is {term}: {_TERM_MEANINGS[term]}"
        if data["creator_tool"]:
            detail += f" (xmp:CreatorTool: {data['creator_tool']})"
        return ProvenanceReport(data, (Evidence("xmp", detail),))


def create(settings: Settings) -> list[ProvenanceCheck]:
    """The XMP check; it needs nothing beyond the standard library and Pillow."""
    del settings  # nothing to configure
    return [XmpCheck()]


# -- parsing ----------------------------------------------------------------------------------


def _refuse_dtd(*args: object) -> int:
    raise XmpError("XMP packet declares a DTD or entities; refused")


def _norm_ns(uri: str) -> str:
    # Some writers drop the IPTC namespace's trailing slash; the intent is not in doubt.
    return uri.rstrip("/")


def _split(name: str) -> tuple[str, str]:
    uri, sep, local = name.rpartition(" ")
    return (_norm_ns(uri), local) if sep else ("", name)


class _Collector:
    """expat handlers that keep the values of the wanted properties, attribute or element."""

    def __init__(self, wanted: dict[tuple[str, str], tuple[str, str]]) -> None:
        self.wanted = wanted  # normalised name -> the name the caller asked for
        self.values: dict[tuple[str, str], list[str]] = {}
        self._open: tuple[str, str] | None = None  # the wanted element we are inside
        self._depth = 0  # elements open inside it
        self._parts: list[str] = []
        self._size = 0
        self._done = False

    def start(self, name: str, attrs: Mapping[str, str]) -> None:
        if self._open is not None:
            self._depth += 1
            return
        for attr, value in attrs.items():
            asked = self.wanted.get(_split(attr))
            if asked is not None:
                self._add(asked, value)
        key = self.wanted.get(_split(name))
        if key is not None:
            resource = attrs.get(RDF_NS + " resource")
            if resource is not None:
                self._add(key, resource)
                self._open, self._done = key, True
            else:
                self._open, self._done = key, False
            self._depth, self._parts, self._size = 0, [], 0

    def end(self, name: str) -> None:
        if self._open is None:
            return
        if self._depth == 0:
            self._finish()
            self._open = None
            return
        self._depth -= 1
        # The first rdf:li of an rdf:Alt or rdf:Seq is the value (x-default for Alt).
        if not self._done and "".join(self._parts).strip():
            self._finish()

    def text(self, data: str) -> None:
        if self._open is None or self._done or self._size >= _MAX_VALUE_CHARS:
            return
        chunk = data[: _MAX_VALUE_CHARS - self._size]
        self._parts.append(chunk)
        self._size += len(chunk)

    def _finish(self) -> None:
        if self._done or self._open is None:
            return
        self._done = True
        value = "".join(self._parts).strip()
        if value:
            self._add(self._open, value)

    def _add(self, key: tuple[str, str], value: str) -> None:
        found = self.values.setdefault(key, [])
        if len(found) < 16:
            found.append(value[:_MAX_VALUE_CHARS])


def _first(values: Mapping[tuple[str, str], list[str]], key: tuple[str, str]) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def packet_text(packet: bytes | str) -> str:
    """The packet as text: XMP may be UTF-8, UTF-16 or UTF-32, with or without a BOM."""
    if isinstance(packet, str):
        text = packet[:MAX_PACKET_BYTES]
    else:
        raw = packet[:MAX_PACKET_BYTES]
        text = raw.decode(_encoding(raw), errors="replace")
    # Padding and stray NULs around the packet are not XML; a str input also makes expat
    # ignore an encoding="..." declaration, which no longer describes the text.
    text = text.strip("\x00\ufeff \t\r\n")
    end = text.rfind(">")
    return text[: end + 1] if end >= 0 else text


def _encoding(raw: bytes) -> str:
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if raw.startswith(bom):
            return name
    head = raw[:4]
    if head.startswith(b"<\x00\x00\x00"):
        return "utf-32-le"
    if head.startswith(b"\x00\x00\x00<"):
        return "utf-32-be"
    if head.startswith(b"<\x00"):
        return "utf-16-le"
    if head.startswith(b"\x00<"):
        return "utf-16-be"
    return "utf-8"


# -- containers -------------------------------------------------------------------------------


def _jpeg_app1_segments(data: bytes) -> list[bytes]:
    """The payloads of a JPEG's APP1 segments, read from the headers up to the scan data."""
    segments: list[bytes] = []
    if not data.startswith(b"\xff\xd8"):
        return segments
    pos = 2
    size = len(data)
    for _ in range(_MAX_JPEG_SEGMENTS):
        while pos < size and data[pos] == 0xFF and pos + 1 < size and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > size or data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            break
        if marker == 0xE1:
            segments.append(data[pos + 4 : pos + 2 + length])
        pos += 2 + length
    return segments


def _jpeg_extended_packet(data: bytes, guid: str) -> bytes | None:
    """Extended XMP reassembled from its APP1 segments (GUID, full length, offset, part)."""
    want = guid.strip().encode("ascii", errors="replace")[:32]
    buffer: bytearray | None = None
    total = 0
    for segment in _jpeg_app1_segments(data):
        if not segment.startswith(_JPEG_EXT_ID):
            continue
        head = len(_JPEG_EXT_ID)
        if len(segment) < head + 40 or segment[head : head + 32] != want:
            continue
        full, offset = struct.unpack_from(">II", segment, head + 32)
        if full == 0 or full > MAX_PACKET_BYTES:
            return None
        if buffer is None:
            buffer, total = bytearray(full), full
        elif full != total:
            return None
        part = segment[head + 40 :]
        if offset + len(part) > total:
            return None
        buffer[offset : offset + len(part)] = part
    return bytes(buffer) if buffer is not None else None


def _gif_packet(data: bytes) -> bytes | None:
    """A GIF's XMP application extension: the raw packet follows the 11-byte application id."""
    at = data.find(_GIF_XMP_ID)
    if at < 0:
        return None
    start = at + len(_GIF_XMP_ID)
    window = data[start : start + MAX_PACKET_BYTES]
    end = window.find(b"<?xpacket end")
    if end >= 0:
        close = window.find(b"?>", end)
        end = close + 2 if close >= 0 else -1
    if end < 0:
        close = window.rfind(b"</x:xmpmeta>")
        end = close + len(b"</x:xmpmeta>") if close >= 0 else -1
    return window[:end] if end > 0 else None
