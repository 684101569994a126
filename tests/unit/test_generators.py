"""The generator-metadata check: each generator's real layout, negatives, garbage, no prompts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import time
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from dignity.media import Media, decode
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.signals.base import ProvenanceCheck, ProvenanceReport
from dignity.signals.generators import GENERIC_A1111, GeneratorCheck, create
from tests.conftest import shared_fixture

CHECK = GeneratorCheck()
PROMPT = "a watercolor lighthouse at dawn, gentle waves, soft pastel sky"
NEGATIVE = "blurry, low contrast"
PROMPT_SHA = hashlib.sha256(PROMPT.encode()).hexdigest()
EMPTY = {"generator": None, "field": None, "prompt_sha256": None}

A1111 = (
    f"{PROMPT}\nNegative prompt: {NEGATIVE}\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)
FORGE = A1111.replace("Version: v1.10.1", "Version: f2.0.1v1.10.1-previous-635-gf5330788")
SDNEXT = A1111.replace("Version: v1.10.1", "App: SD.Next, Version: 8b73cb6")

COMFY_GRAPH = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base.safetensors"},
    },
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
    "10": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 42, "steps": 20, "positive": ["10", 0], "negative": ["7", 0]},
    },
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}
COMFY_WORKFLOW = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [{"id": 6, "type": "CLIPTextEncode", "widgets_values": [PROMPT]}],
    "links": [[1, 4, 0, 3, 0, "MODEL"]],
    "version": 0.4,
}
SWARM = {
    "sui_image_params": {"prompt": PROMPT, "negativeprompt": NEGATIVE, "seed": 1, "steps": 25},
    "sui_extra_data": {"date": "2024-08-07"},
}
FOOOCUS = {
    "prompt": PROMPT,
    "negative_prompt": NEGATIVE,
    "styles": "['Fooocus V2']",
    "performance": "Speed",
    "base_model": "juggernautXL_v8Rundiffusion.safetensors",
    "version": "Fooocus v2.5.5",
}
NOVELAI_COMMENT = {"prompt": PROMPT, "steps": 28, "scale": 5, "uc": NEGATIVE, "sampler": "k_euler"}
DRAW_THINGS_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 6.0.0">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/">'
    '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
    f"{PROMPT}&#xA;-{NEGATIVE}&#xA;Steps: 8, Sampler: Euler A, Guidance Scale: 4.5"
    "</rdf:li></rdf:Alt></dc:description>"
    "<xmp:CreatorTool>Draw Things</xmp:CreatorTool>"
    '<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">'
    + json.dumps({"c": PROMPT, "uc": NEGATIVE, "seed": 1, "steps": 8}).replace('"', "&quot;")
    + "</rdf:li></rdf:Alt></exif:UserComment>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def image() -> Image.Image:
    return landscape(11, (96, 64))


def png(chunks: dict[str, str], itxt: dict[str, str] | None = None) -> Media:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    for key, value in (itxt or {}).items():
        info.add_itxt(key, value)
    return decode(encode(image(), "PNG", pnginfo=info))


def with_exif(fmt: str, ifd0: dict[int, Any], exif_ifd: dict[int, Any] | None = None) -> Media:
    exif = Image.Exif()
    for tag, value in ifd0.items():
        exif[tag] = value
    if exif_ifd:
        sub = exif.get_ifd(0x8769)
        for tag, value in exif_ifd.items():
            sub[tag] = value
    return decode(encode(image(), fmt, exif=exif.tobytes()))


def unicode_comment(text: str, encoding: str = "utf-16-be") -> bytes:
    return b"UNICODE\x00" + text.encode(encoding)


def assert_clean(report: ProvenanceReport) -> None:
    """The report is JSON and carries no prompt text, not even a distinctive word of one."""
    dumped = json.dumps(report.data) + json.dumps([e.to_dict() for e in report.evidence])
    for secret in (PROMPT, "watercolor", "lighthouse", NEGATIVE, "blurry"):
        assert secret not in dumped
    assert json.loads(json.dumps(report.data)) == report.data


def assert_found(report: ProvenanceReport, generator: str, field: str, hashed: bool) -> None:
    assert report.data["generator"] == generator
    assert report.data["field"] == field
    assert report.data["prompt_sha256"] == (PROMPT_SHA if hashed else None)
    assert "error" not in report.data
    assert len(report.evidence) == 1
    assert report.evidence[0].source == "metadata"
    assert generator in report.evidence[0].detail
    assert_clean(report)


def test_factory_returns_a_provenance_check() -> None:
    checks = create(Settings())
    assert len(checks) == 1
    assert isinstance(checks[0], ProvenanceCheck)
    assert checks[0].name == "generator" and checks[0].version


# -- PNG text chunks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "generator", "field", "hashed"),
    [
        ({"parameters": A1111}, GENERIC_A1111, "png:parameters", True),
        ({"parameters": FORGE}, "Forge", "png:parameters", True),
        ({"parameters": SDNEXT}, "SD.Next", "png:parameters", True),
        ({"prompt": json.dumps(COMFY_GRAPH)}, "ComfyUI", "png:prompt", True),
        (
            {"prompt": json.dumps(COMFY_GRAPH), "workflow": json.dumps(COMFY_WORKFLOW)},
            "ComfyUI",
            "png:prompt",
            True,
        ),
        ({"workflow": json.dumps(COMFY_WORKFLOW)}, "ComfyUI", "png:workflow", False),
        # ComfyUI savers that add A1111-style parameters are still ComfyUI.
        ({"parameters": A1111, "prompt": json.dumps(COMFY_GRAPH)}, "ComfyUI", "png:prompt", True),
        ({"parameters": json.dumps(SWARM)}, "SwarmUI", "png:parameters", True),
        (
            {"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"},
            "Fooocus",
            "png:fooocus_scheme",
            True,
        ),
        (
            {"parameters": A1111 + ", Version: Fooocus v2.5.5", "fooocus_scheme": "a1111"},
            "Fooocus",
            "png:fooocus_scheme",
            True,
        ),
        ({"parameters": json.dumps(FOOOCUS)}, "Fooocus", "png:parameters", True),
        (
            {
                "Title": "AI generated image",
                "Description": PROMPT,
                "Software": "NovelAI",
                "Source": "NovelAI Diffusion V4.5 4BDE2A90",
                "Comment": json.dumps(NOVELAI_COMMENT),
            },
            "NovelAI",
            "png:Software",
            True,
        ),
        ({"Comment": json.dumps(NOVELAI_COMMENT)}, "NovelAI", "png:Comment", True),
        (
            {"Source": "NovelAI Diffusion V3 7BCCAA2C", "Description": PROMPT},
            "NovelAI",
            "png:Source",
            True,
        ),
        (
            {"invokeai_metadata": json.dumps({"positive_prompt": PROMPT, "seed": 1})},
            "InvokeAI",
            "png:invokeai_metadata",
            True,
        ),
        ({"invokeai_graph": json.dumps({"nodes": {}})}, "InvokeAI", "png:invokeai_graph", False),
        (
            {"sd-metadata": json.dumps({"image": {"prompt": [{"prompt": PROMPT, "weight": 1}]}})},
            "InvokeAI",
            "png:sd-metadata",
            True,
        ),
        ({"Dream": f'"{PROMPT}" -s 50 -S 42 -W 512 -H 512'}, "InvokeAI", "png:Dream", True),
        (
            {"prompt": PROMPT, "use_stable_diffusion_model": "sd-v1-4", "seed": "42"},
            "Easy Diffusion",
            "png:use_stable_diffusion_model",
            True,
        ),
        (
            {
                "Author": "someone",
                "Description": f"{PROMPT} --ar 2:1 Job ID: a7421d2f-b262-44f9-977c-ac23e9c7d3e3",
            },
            "Midjourney",
            "png:Description",
            False,  # the hash covers the whole prompt, parameters included
        ),
        ({"Software": "Draw Things"}, "Draw Things", "png:Software", False),
    ],
)
def test_png_generators(chunks: dict[str, str], generator: str, field: str, hashed: bool) -> None:
    report = CHECK.check(png(chunks))
    if field == "png:Description":
        expected = hashlib.sha256(f"{PROMPT} --ar 2:1".encode()).hexdigest()
        assert report.data["prompt_sha256"] == expected
        report = dataclasses.replace(report, data={**report.data, "prompt_sha256": None})
    assert_found(report, generator, field, hashed)


def test_non_latin_prompt_in_itxt_and_utf8_mislabelled_as_latin1() -> None:
    prompt = "phare à l'aube, aquarelle — 灯台"
    expected = hashlib.sha256(prompt.encode()).hexdigest()
    text = A1111.replace(PROMPT, prompt)
    assert CHECK.check(png({}, {"parameters": text})).data["prompt_sha256"] == expected

    # A raw tEXt chunk holding UTF-8, which Pillow decodes as Latin-1.
    data = encode(image(), "PNG")
    body = b"parameters\x00" + text.encode("utf-8")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body))
    at = data.index(b"IDAT") - 4
    report = CHECK.check(decode(data[:at] + chunk + data[at:]))
    assert report.data["generator"] == GENERIC_A1111
    assert report.data["prompt_sha256"] == expected


def test_same_prompt_same_hash_across_generators_and_containers() -> None:
    hashes = {
        CHECK.check(png({"parameters": A1111})).data["prompt_sha256"],
        CHECK.check(png({"prompt": json.dumps(COMFY_GRAPH)})).data["prompt_sha256"],
        CHECK.check(with_exif("JPEG", {}, {0x9286: unicode_comment(A1111)})).data["prompt_sha256"],
    }
    assert hashes == {PROMPT_SHA}


# -- EXIF in JPEG and WebP --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize(
    "comment",
    [
        unicode_comment(A1111),  # piexif, as Automatic1111 writes it
        unicode_comment(A1111, "utf-16-le"),
        unicode_comment(A1111, "utf-16"),  # with a byte-order mark
        b"ASCII\x00\x00\x00" + A1111.encode(),
    ],
)
def test_a1111_user_comment(fmt: str, comment: bytes) -> None:
    report = CHECK.check(with_exif(fmt, {}, {0x9286: comment}))
    assert_found(report, GENERIC_A1111, "exif:UserComment", True)


def test_swarmui_jpeg_user_comment() -> None:
    comment = unicode_comment(json.dumps(SWARM, indent=2))
    report = CHECK.check(with_exif("JPEG", {}, {0x9286: comment}))
    assert_found(report, "SwarmUI", "exif:UserComment", True)


def test_fooocus_jpeg() -> None:
    # Fooocus sets these on Pillow's top-level Exif: all three land in IFD0, UTF-8 unprefixed.
    ifd0 = {
        0x9286: json.dumps(FOOOCUS).encode(),
        0x0131: "Fooocus v2.5.5",
        0x927C: b"fooocus",
    }
    assert_found(CHECK.check(with_exif("JPEG", ifd0)), "Fooocus", "exif:UserComment", True)


@pytest.mark.parametrize("fmt", ["WEBP", "JPEG"])
def test_comfyui_exif(fmt: str) -> None:
    ifd0 = {
        0x0110: "prompt:" + json.dumps(COMFY_GRAPH),
        0x010F: "workflow:" + json.dumps(COMFY_WORKFLOW),
    }
    assert_found(CHECK.check(with_exif(fmt, ifd0)), "ComfyUI", "exif:Model", True)
    workflow_only = with_exif(fmt, {0x010F: "workflow:" + json.dumps(COMFY_WORKFLOW)})
    assert_found(CHECK.check(workflow_only), "ComfyUI", "exif:Make", False)


def test_comfyui_extended_formats_user_comment() -> None:
    comment = json.dumps({"prompt": COMFY_GRAPH, "workflow": COMFY_WORKFLOW}).encode()
    report = CHECK.check(with_exif("WEBP", {}, {0x9286: comment}))
    assert_found(report, "ComfyUI", "exif:UserComment", True)


def test_exif_software_names_a_generator() -> None:
    report = CHECK.check(with_exif("JPEG", {0x0131: "NovelAI"}))
    assert_found(report, "NovelAI", "exif:Software", False)
    assert "names the generator" in report.evidence[0].detail


def test_midjourney_exif_description() -> None:
    text = f"{PROMPT} Job ID: A7421D2F-B262-44F9-977C-AC23E9C7D3E3"
    report = CHECK.check(with_exif("JPEG", {0x010E: text}))
    assert_found(report, "Midjourney", "exif:ImageDescription", True)


def test_exif_in_png() -> None:
    report = CHECK.check(with_exif("PNG", {}, {0x9286: unicode_comment(A1111)}))
    assert_found(report, GENERIC_A1111, "exif:UserComment", True)


def test_jpeg_comment_segment() -> None:
    report = CHECK.check(decode(encode(image(), "JPEG", comment=A1111.encode())))
    assert_found(report, GENERIC_A1111, "jpeg:comment", True)


# -- XMP --------------------------------------------------------------------------------------


def test_draw_things_xmp_in_png() -> None:
    report = CHECK.check(png({}, {"XML:com.adobe.xmp": DRAW_THINGS_XMP}))
    assert_found(report, "Draw Things", "xmp:CreatorTool", True)


def test_draw_things_description_only() -> None:
    start = DRAW_THINGS_XMP.index("<exif:UserComment>")
    end = DRAW_THINGS_XMP.index("</exif:UserComment>") + len("</exif:UserComment>")
    xmp = DRAW_THINGS_XMP[:start] + DRAW_THINGS_XMP[end:]
    report = CHECK.check(decode(encode(image(), "WEBP", xmp=xmp.encode())))
    assert_found(report, "Draw Things", "xmp:CreatorTool", True)


# -- what must not count ----------------------------------------------------------------------


CAMERA_EXIF = {
    0x010F: "Canon",
    0x0110: "Canon EOS R6",
    0x0131: "Adobe Photoshop 25.0 (Windows)",
    0x010E: "Harbour at dawn",
}


@pytest.mark.parametrize(
    "media",
    [
        pytest.param(lambda: decode(encode(image(), "JPEG")), id="plain-jpeg"),
        pytest.param(lambda: decode(encode(image(), "PNG")), id="plain-png"),
        pytest.param(lambda: decode(encode(image(), "WEBP")), id="plain-webp"),
        pytest.param(lambda: decode(encode(image(), "GIF")), id="plain-gif"),
        pytest.param(lambda: decode(encode(image(), "TIFF")), id="plain-tiff"),
        pytest.param(
            lambda: with_exif("JPEG", CAMERA_EXIF, {0x9286: b"ASCII\x00\x00\x00Taken at f/8"}),
            id="camera-photoshop",
        ),
        pytest.param(lambda: png({"Software": "Adobe Photoshop 25.0"}), id="png-photoshop"),
        pytest.param(lambda: png({"Software": "GIMP 2.10.36"}), id="png-gimp"),
        pytest.param(lambda: png({"Software": "Fooocusbar 1.0"}), id="lookalike-name"),
        pytest.param(
            lambda: png({"parameters": "quality=95; exposure=+0.3\nSteps: none"}),
            id="parameters-not-a1111",
        ),
        pytest.param(
            lambda: png({"parameters": "Steps: 20 of the lighthouse stairs"}), id="steps-prose"
        ),
        pytest.param(
            lambda: png({"parameters": "Mix well.\nSteps: 3, then rinse, Seed: none"}),
            id="steps-one-key",
        ),
        pytest.param(
            lambda: png({"prompt": "an essay prompt", "workflow": "review, then publish"}),
            id="prompt-not-json",
        ),
        pytest.param(lambda: png({"prompt": json.dumps({"a": 1, "b": [2]})}), id="prompt-json"),
        pytest.param(
            lambda: png({"Description": "Job ID: 12345 from the print shop"}), id="job-id-prose"
        ),
        pytest.param(lambda: png({"Comment": json.dumps({"steps": 3})}), id="comment-json"),
        pytest.param(lambda: png({"Dream": "I had a dream"}), id="dream-prose"),
        pytest.param(lambda: with_exif("WEBP", {0x010F: "workflow:review"}), id="make-prose"),
    ],
)
def test_not_generators(media: Any) -> None:
    report = CHECK.check(media())
    assert report.data == EMPTY
    assert report.evidence == ()


def test_real_photo_fixture_is_not_generated() -> None:
    for name in ("A.jpg", "C.jpg"):
        report = CHECK.check(decode(shared_fixture("c2pa", name).read_bytes()))
        assert report.data == EMPTY


# -- garbage ----------------------------------------------------------------------------------


def test_garbage_exif_in_a_real_file() -> None:
    data = encode(image(), "JPEG")
    junk = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(range(256)) * 4
    media = decode(data[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + data[2:])
    report = CHECK.check(media)
    assert report.data["generator"] is None
    assert json.loads(json.dumps(report.data)) == report.data


@pytest.mark.parametrize(
    "info",
    [
        {"exif": b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"},
        {"exif": b"\x00" * 64},
        {"exif": b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x87\x69" * 40},
        {"parameters": "{" * 200_000},  # deep enough to exhaust a recursive parser
        {"parameters": "[" * 100_000 + "]" * 100_000},
        {"prompt": '{"3": {"class_type": "KSampler", "inputs": {"positive": ["3", 0]'},
        {"prompt": json.dumps({"3": {"class_type": "K", "inputs": {"positive": ["3", 0]}}})},
        {"parameters": "x" * (2 << 20)},
        {"parameters": "\udcff\ud800 broken surrogates\nSteps: 1, Seed: 1, Size: 1x1"},
        {"Comment": "9" * 10_000},  # over Python's int-string limit
        # Regular expressions meet long runs of what they skip: must stay linear.
        {"Description": " " * 500_000 + "Job ID:"},
        {"Dream": '"' + '" \t' * 200_000},
        {"parameters": "Steps: " + " " * 500_000},
    ],
)
def test_garbage_metadata_never_raises(info: dict[str, Any]) -> None:
    base = decode(encode(image(), "PNG"))
    start = time.perf_counter()
    report = CHECK.check(dataclasses.replace(base, info=info))
    assert time.perf_counter() - start < 1.0
    assert json.loads(json.dumps(report.data)) == report.data


def test_oversized_text_is_reported() -> None:
    base = decode(encode(image(), "PNG"))
    report = CHECK.check(dataclasses.replace(base, info={"parameters": A1111 * 20_000}))
    assert report.data["generator"] is None
    assert "not read" in report.data["error"]


def test_invalid_utf16_comment() -> None:
    comment = b"UNICODE\x00" + b"\xd8\x00\xdc" + unicode_comment(A1111)[8:]  # odd, bad surrogate
    report = CHECK.check(with_exif("JPEG", {}, {0x9286: comment}))
    assert json.loads(json.dumps(report.data)) == report.data


@settings(max_examples=120, deadline=None)
@given(
    key=st.sampled_from(["parameters", "prompt", "workflow", "Comment", "Software", "Dream"]),
    text=st.text(max_size=300),
    exif=st.binary(max_size=300),
)
def test_fuzzed_metadata_never_raises(key: str, text: str, exif: bytes) -> None:
    base = decode(encode(image(), "PNG"))
    for info in ({key: text}, {"exif": exif}, {"exif": b"Exif\x00\x00MM\x00*" + exif}):
        report = CHECK.check(dataclasses.replace(base, info=info))
        assert json.loads(json.dumps(report.data)) == report.data
