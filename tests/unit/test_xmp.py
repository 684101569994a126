"""The XMP check: IPTC digital source type in every container, parsed safely by namespace."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from dignity.media import Media, decode
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.signals.base import ProvenanceCheck
from dignity.signals.xmp import XmpCheck, create
from tests.conftest import shared_fixture

IPTC = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
TERMS = "http://cv.iptc.org/newscodes/digitalsourcetype/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

CHECK = XmpCheck()


def packet(description: str, extra_ns: str = "") -> str:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="{RDF}">{description}</rdf:RDF></x:xmpmeta>'
        '<?xpacket end="w"?>'
    ).replace("NS_HERE", extra_ns)


ATTRIBUTE_FORM = packet(
    f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC}" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    f'Iptc4xmpExt:DigitalSourceType="{TERMS}trainedAlgorithmicMedia" '
    'xmp:CreatorTool="Adobe Firefly"/>'
)
# Element form under a prefix nobody else uses: only the namespace URI identifies it.
ELEMENT_FORM = packet(
    f'<rdf:Description rdf:about="" xmlns:zz9="{IPTC}">'
    f"<zz9:DigitalSourceType>\n  {TERMS}compositeWithTrainedAlgorithmicMedia\n"
    "</zz9:DigitalSourceType></rdf:Description>"
)
RESOURCE_FORM = packet(
    f'<rdf:Description rdf:about="" xmlns:ext="{IPTC}">'
    f'<ext:DigitalSourceType rdf:resource="{TERMS}algorithmicMedia"/></rdf:Description>'
)
CAMERA = packet(
    f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC}" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="Pixel Camera" '
    f'Iptc4xmpExt:DigitalSourceType="{TERMS}digitalCapture"/>'
)


def image() -> Image.Image:
    return landscape(7, (96, 64))


def jpeg_with_app1(payloads: list[bytes]) -> bytes:
    """A JPEG with the given APP1 payloads inserted by hand after SOI."""
    data = encode(image(), "JPEG", quality=80)
    segments = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return data[:2] + segments + data[2:]


def jpeg_xmp(xmp: str | bytes) -> Media:
    raw = xmp.encode() if isinstance(xmp, str) else xmp
    return decode(jpeg_with_app1([b"http://ns.adobe.com/xap/1.0/\x00" + raw]))


def png_xmp(xmp: str) -> Media:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    return decode(encode(image(), "PNG", pnginfo=info))


def webp_xmp(xmp: str) -> Media:
    return decode(encode(image(), "WEBP", xmp=xmp.encode()))


def assert_json(data: dict[str, object]) -> None:
    assert json.loads(json.dumps(data)) == data


def test_factory_returns_a_provenance_check() -> None:
    checks = create(Settings())
    assert len(checks) == 1
    assert isinstance(checks[0], ProvenanceCheck)
    assert checks[0].name == "xmp" and checks[0].version


@pytest.mark.parametrize(
    ("make", "xmp", "term"),
    [
        (jpeg_xmp, ATTRIBUTE_FORM, "trainedAlgorithmicMedia"),
        (png_xmp, ELEMENT_FORM, "compositeWithTrainedAlgorithmicMedia"),
        (webp_xmp, RESOURCE_FORM, "algorithmicMedia"),
        (png_xmp, ATTRIBUTE_FORM, "trainedAlgorithmicMedia"),
        (webp_xmp, ELEMENT_FORM, "compositeWithTrainedAlgorithmicMedia"),
        (jpeg_xmp, RESOURCE_FORM, "algorithmicMedia"),
    ],
)
def test_ai_source_type_found_in_each_container(make: object, xmp: str, term: str) -> None:
    media = make(xmp)  # type: ignore[operator]
    report = CHECK.check(media)
    assert report.data["present"] is True
    assert report.data["digital_source_type"] == term
    assert len(report.evidence) == 1
    assert report.evidence[0].source == "xmp"
    assert term in report.evidence[0].detail
    assert "error" not in report.data
    assert_json(report.data)


def test_creator_tool_is_reported() -> None:
    report = CHECK.check(jpeg_xmp(ATTRIBUTE_FORM))
    assert report.data["creator_tool"] == "Adobe Firefly"
    assert "Adobe Firefly" in report.evidence[0].detail


def test_camera_capture_is_reported_without_evidence() -> None:
    report = CHECK.check(jpeg_xmp(CAMERA))
    assert report.data == {
        "present": True,
        "digital_source_type": "digitalCapture",
        "creator_tool": "Pixel Camera",
    }
    assert report.evidence == ()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"])
def test_no_packet(fmt: str) -> None:
    report = CHECK.check(decode(encode(image(), fmt)))
    assert report.data == {"present": False, "digital_source_type": None, "creator_tool": None}
    assert report.evidence == ()


def test_packet_without_source_type() -> None:
    xmp = packet('<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"/>')
    report = CHECK.check(png_xmp(xmp))
    assert report.data["present"] is True
    assert report.data["digital_source_type"] is None
    assert report.evidence == ()


def test_prefix_bound_to_another_namespace_does_not_count() -> None:
    xmp = packet(
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://example.org/not-iptc/" '
        f'Iptc4xmpExt:DigitalSourceType="{TERMS}trainedAlgorithmicMedia"/>'
    )
    report = CHECK.check(jpeg_xmp(xmp))
    assert report.data["digital_source_type"] is None
    assert report.evidence == ()


def test_generative_claim_wins_over_a_second_value() -> None:
    xmp = packet(
        f'<rdf:Description rdf:about="" xmlns:I="{IPTC}">'
        f'<I:DigitalSourceType rdf:resource="{TERMS}digitalCapture"/></rdf:Description>'
        f'<rdf:Description rdf:about="" xmlns:J="{IPTC}" '
        f'J:DigitalSourceType="{TERMS}trainedAlgorithmicMedia"/>'
    )
    report = CHECK.check(png_xmp(xmp))
    assert report.data["digital_source_type"] == "trainedAlgorithmicMedia"
    assert len(report.evidence) == 1


def test_bare_term_and_missing_trailing_slash_namespace() -> None:
    xmp = packet(
        f'<rdf:Description rdf:about="" xmlns:I="{IPTC.rstrip("/")}" '
        'I:DigitalSourceType="trainedAlgorithmicMedia"/>'
    )
    assert CHECK.check(webp_xmp(xmp)).data["digital_source_type"] == "trainedAlgorithmicMedia"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_packets_in_other_unicode_encodings(encoding: str) -> None:
    raw = ATTRIBUTE_FORM.replace("\ufeff", "").encode(encoding)
    report = CHECK.check(jpeg_xmp(raw))
    assert report.data["digital_source_type"] == "trainedAlgorithmicMedia"


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE x:xmpmeta ['
    '<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]>"
    + '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="'
    + RDF
    + '"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
    "<xmp:CreatorTool>&j;</xmp:CreatorTool></rdf:Description></rdf:RDF></x:xmpmeta>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="'
    + RDF
    + '"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
    "<xmp:CreatorTool>&e;</xmp:CreatorTool></rdf:Description></rdf:RDF></x:xmpmeta>"
)


@pytest.mark.parametrize("xmp", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_dtd_and_entities_are_refused_unexpanded(xmp: str) -> None:
    start = time.perf_counter()
    report = CHECK.check(png_xmp(xmp))
    assert time.perf_counter() - start < 0.5
    assert report.data["present"] is True
    assert report.data["creator_tool"] is None
    # Refused by the text check, before expat saw a byte (expat's own handlers are the backstop).
    assert report.data["error"].endswith("refused unparsed")
    assert report.evidence == ()
    assert "root:" not in json.dumps(report.data)


@pytest.mark.parametrize(
    "xmp",
    [
        "<x:xmpmeta><unclosed>",
        "not xml at all",
        packet('<rdf:Description undeclared:DigitalSourceType="trainedAlgorithmicMedia"/>'),
        "",
    ],
)
def test_malformed_packets_are_reported_not_raised(xmp: str) -> None:
    media = dataclasses.replace(decode(encode(image(), "PNG")), info={"xmp": xmp.encode()})
    report = CHECK.check(media)
    assert report.evidence == ()
    assert report.data["digital_source_type"] is None
    assert_json(report.data)


def test_jpeg_extended_xmp_is_reassembled() -> None:
    guid = "0123456789ABCDEF0123456789ABCDEF"
    main = packet(
        '<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
        f'xmpNote:HasExtendedXMP="{guid}"/>'
    ).encode()
    extension = packet(
        f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC}">'
        f"<Iptc4xmpExt:DigitalSourceType>{TERMS}trainedAlgorithmicMedia"
        "</Iptc4xmpExt:DigitalSourceType></rdf:Description>"
    ).encode()
    half = len(extension) // 2
    parts = [
        b"http://ns.adobe.com/xmp/extension/\x00"
        + guid.encode()
        + struct.pack(">II", len(extension), offset)
        + chunk
        for offset, chunk in ((half, extension[half:]), (0, extension[:half]))  # any order
    ]
    media = decode(jpeg_with_app1([b"http://ns.adobe.com/xap/1.0/\x00" + main, *parts]))
    report = CHECK.check(media)
    assert report.data["digital_source_type"] == "trainedAlgorithmicMedia"
    assert len(report.evidence) == 1


def test_jpeg_xmp_found_even_when_pillow_does_not_expose_it() -> None:
    media = jpeg_xmp(ATTRIBUTE_FORM)
    bare = dataclasses.replace(media, info={k: v for k, v in media.info.items() if k != "xmp"})
    assert CHECK.check(bare).data["digital_source_type"] == "trainedAlgorithmicMedia"


def test_gif_application_extension() -> None:
    buffer = io.BytesIO()
    image().convert("P").save(buffer, "GIF")
    gif = buffer.getvalue()
    trailer = bytes([1]) + bytes(range(255, -1, -1)) + b"\x00"  # the XMP "magic trailer"
    extension = b"\x21\xff\x0bXMP DataXMP" + ATTRIBUTE_FORM.encode() + trailer
    at = gif.index(b"\x2c")  # before the first image descriptor
    media = decode(gif[:at] + extension + gif[at:])
    assert media.format == "GIF"
    assert CHECK.check(media).data["digital_source_type"] == "trainedAlgorithmicMedia"


def test_tiff_tag_700() -> None:
    media = decode(encode(image(), "TIFF", tiffinfo={700: ATTRIBUTE_FORM.encode()}))
    assert CHECK.check(media).data["digital_source_type"] == "trainedAlgorithmicMedia"


def test_reported_strings_are_cleaned_and_bounded() -> None:
    xmp = packet(
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        f"<xmp:CreatorTool>Tool&#x85;\t{'x' * 5000}</xmp:CreatorTool></rdf:Description>"
    )
    tool = CHECK.check(png_xmp(xmp)).data["creator_tool"]
    assert isinstance(tool, str)
    assert tool.startswith("Tool x") and len(tool) <= 200 and "\x85" not in tool


def test_oversized_packet_is_not_parsed() -> None:
    media = dataclasses.replace(decode(encode(image(), "PNG")), info={"xmp": b" " * (3 << 20)})
    report = CHECK.check(media)
    assert report.data["present"] is True
    assert "larger" in report.data["error"]


def test_real_lightroom_photo_is_not_ai() -> None:
    media = decode(shared_fixture("c2pa", "A.jpg").read_bytes())
    report = CHECK.check(media)
    assert report.data["present"] is True
    assert report.data["digital_source_type"] is None
    assert str(report.data["creator_tool"]).startswith("Adobe Lightroom")
    assert report.evidence == ()


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_garbage_never_raises(junk: bytes | str) -> None:
    base = decode(encode(image(), "PNG"))
    for value in (junk, ATTRIBUTE_FORM[: len(junk) % len(ATTRIBUTE_FORM)]):
        report = CHECK.check(dataclasses.replace(base, info={"xmp": value}))
        assert_json(report.data)
