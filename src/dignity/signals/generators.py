"""Provenance check: the metadata that image generators write into the files they save.

Local and hosted generators label their output with the settings that made it, each in its own
place (PNG text chunks, EXIF tags, XMP), and the label survives wherever a platform does not
strip metadata. Each detector keys on a layout that only that generator writes, listed below
with the reason a camera or an editor cannot produce it. The prompt is never stored or
returned: only the SHA-256 of its UTF-8 text, surrounding whitespace stripped, so that uploads
made from one prompt can be grouped. Every parse is bounded (a field over 1 MiB is not read,
JSON nesting errors are caught) and garbage yields no match, never an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image

from dignity.media import Media
from dignity.settings import Settings
from dignity.signals import xmp
from dignity.signals.base import Evidence, ProvenanceCheck, ProvenanceReport
from dignity.text import parse_json

__all__ = ["GENERIC_A1111", "GeneratorCheck", "create"]

# What each detector keys on, and why it cannot be a camera's or an editor's metadata:
#
# - Automatic1111, Forge, SD.Next (and tools copying them): PNG text "parameters", or EXIF
#   UserComment in JPEG/WebP (piexif's "UNICODE\0" prefix then UTF-16, big-endian as piexif
#   writes it; the byte order is guessed from the zero bytes), holding the prompt, an optional
#   "Negative prompt:" line and a "Steps: N, Sampler: ..., Seed: ..." line. That line is
#   required with at least two of its usual keys. Forge writes "Version: f<n>...", SD.Next
#   "App: SD.Next"; anything else is "Automatic1111 (or compatible)".
# - ComfyUI: PNG text "prompt" (the API graph: nodes with "class_type" and "inputs") and
#   "workflow" (the editor graph: "nodes" and "links"). Its WebP/JPEG save nodes put
#   "prompt:{json}" in EXIF Model (0x0110) and "workflow:{json}" in Make (0x010F), counting
#   down for further keys. Both are validated as graphs, not matched as words.
# - SwarmUI: "parameters" or EXIF UserComment holding JSON with "sui_image_params".
# - Fooocus: PNG "fooocus_scheme" beside "parameters" (JSON whose "version" says Fooocus, or
#   A1111 text with "Version: Fooocus"); in JPEG/WebP the same JSON as bare UTF-8 in an IFD0
#   UserComment, with Software "Fooocus v...".
# - InvokeAI: PNG "invokeai_metadata", "invokeai_graph", "invokeai_workflow", and from 2.x
#   "sd-metadata" and "Dream" ('"prompt" -s 50 -S 42 ...'): keys no other tool writes.
# - NovelAI: PNG "Software" = "NovelAI", "Source" naming NovelAI, or "Comment" JSON with its
#   "uc"/"steps"/"sampler" settings.
# - Easy Diffusion: PNG keys "use_stable_diffusion_model" / "Stable Diffusion model".
# - Midjourney: PNG "Description" (or EXIF ImageDescription) ending in "Job ID: <uuid>".
# - Draw Things: XMP xmp:CreatorTool = "Draw Things", its settings as JSON in XMP
#   exif:UserComment (prompt under "c") and as text in dc:description.
# - A Software tag (PNG, EXIF 0x0131, XMP CreatorTool) naming a product whose only function is
#   generating images. Editors that merely include generative features (Photoshop, Lightroom,
#   GIMP, Krita) are deliberately absent: a false positive labels a real photo as AI-made.

GENERIC_A1111: Final = "Automatic1111 (or compatible)"

_MAX_TEXT: Final = 1024 * 1024  # characters of one metadata field we are willing to read
_MAX_EXIF: Final = 4 * 1024 * 1024
_MAX_NODES: Final = 10_000
_MAX_HOPS: Final = 8

_EXIF_IFD: Final = 0x8769
_USER_COMMENT: Final = 0x9286
_SOFTWARE: Final = 0x0131
_IMAGE_DESCRIPTION: Final = 0x010E
# ComfyUI's EXIF writers: prompt in Model, extra_pnginfo keys from Make downwards.
_COMFY_EXIF_TAGS: Final = {
    0x0110: "Model",
    0x010F: "Make",
    0x010E: "ImageDescription",
    0x010D: "DocumentName",
}

# Bytes that any UserComment _classify_parameters accepts must contain: UTF-16 text always
# has the UNICODE prefix, and ASCII, UTF-8 and Shift-JIS keep these markers as they are.
_USER_COMMENT_MARKERS: Final = (
    b"UNICODE\x00",
    b"Steps:",
    b"sui_image_params",
    b"ooocus",
    b"use_stable_diffusion_model",
    b"Stable Diffusion model",
    b"class_type",
    b"nodes",
)

_EXIF_XMP_NS: Final = "http://ns.adobe.com/exif/1.0/"
_DC_NS: Final = "http://purl.org/dc/elements/1.1/"
_XMP_USER_COMMENT: Final = (_EXIF_XMP_NS, "UserComment")
_XMP_DESCRIPTION: Final = (_DC_NS, "description")

# Lower-case name prefixes of products that only generate images, as they sign Software tags.
_GENERATOR_SOFTWARE: Final = (
    ("novelai", "NovelAI"),
    ("draw things", "Draw Things"),
    ("fooocus", "Fooocus"),
    ("midjourney", "Midjourney"),
    ("comfyui", "ComfyUI"),
    ("invokeai", "InvokeAI"),
    ("stable diffusion", "Stable Diffusion"),
    ("stable-diffusion-webui", "Automatic1111"),
    ("sd.next", "SD.Next"),
    ("swarmui", "SwarmUI"),
    ("easy diffusion", "Easy Diffusion"),
    ("adobe firefly", "Adobe Firefly"),
    ("dall-e", "DALL-E"),
    ("dall·e", "DALL-E"),
)

_PARAMS_LINE: Final = re.compile(r"Steps: *\d+\s*(,|$)")
_PARAM_KEYS: Final = (
    "Sampler: ",
    "CFG scale: ",
    "Seed: ",
    "Size: ",
    "Model: ",
    "Model hash: ",
    "Schedule type: ",
)
_FORGE_VERSION: Final = re.compile(r"\bVersion: *f\d")
# No leading \s*: searched over untrusted text, it would make the search quadratic.
_MJ_JOB: Final = re.compile(
    r"Job ID: *[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\s*$",
    re.IGNORECASE,
)
_DREAM: Final = re.compile(r'\s*"(?P<prompt>.*)"\s+-[A-Za-z]', re.DOTALL)
_INVOKE_KEYS: Final = (
    "invokeai_metadata",
    "sd-metadata",
    "invokeai_graph",
    "invokeai_workflow",
    "dream",
)
# Inputs through which a ComfyUI sampler's "positive" reaches the text node that feeds it.
_COMFY_TEXT_INPUTS: Final = (
    "text",
    "text_g",
    "prompt",
    "positive",
    "clip_l",
    "t5xxl",
    "string",
    "value",
    "conditioning",
    "conditioning_1",
    "conditioning_to",
)


@dataclass(frozen=True)
class _Found:
    generator: str
    field: str  # e.g. "png:parameters", "exif:UserComment"
    where: str  # the field for people: "PNG text chunk 'parameters'"
    prompt: str | None = None
    named: bool = False  # the field names the generator rather than carrying its settings

    def evidence(self) -> Evidence:
        verb = "names the generator" if self.named else "written by"
        return Evidence("metadata", f"{self.where} {verb} {self.generator}")


class GeneratorCheck:
    """Reports which AI generator's metadata the file carries, if any, and a prompt hash."""

    name = "generator"
    version = "1"

    def check(self, media: Media) -> ProvenanceReport:
        data: dict[str, Any] = {"generator": None, "field": None, "prompt_sha256": None}
        errors: list[str] = []
        try:
            found = _detect(media, errors)
        except Exception as exc:  # a check never raises; what went wrong is reported instead
            errors.append(f"{type(exc).__name__}: {xmp.clean_text(str(exc))}")
            found = None
        if errors:
            data["error"] = "; ".join(errors)
        if found is None:
            return ProvenanceReport(data)
        data["generator"] = found.generator
        data["field"] = found.field
        data["prompt_sha256"] = _prompt_sha256(found.prompt)
        return ProvenanceReport(data, (found.evidence(),))


def create(settings: Settings) -> list[ProvenanceCheck]:
    """The generator-metadata check; it needs nothing beyond the standard library and Pillow."""
    del settings  # nothing to configure
    return [GeneratorCheck()]


# -- where the metadata lives -------------------------------------------------------------------


def _detect(media: Media, errors: list[str]) -> _Found | None:
    info = media.info
    if media.format == "PNG":
        found = _from_png_text(info, errors)
        if found is not None:
            return found
    comment = info.get("comment")  # JPEG COM segment, GIF comment extension
    if media.format != "PNG" and isinstance(comment, bytes | str) and comment:
        text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment
        if len(text) <= _MAX_TEXT:
            kind = _classify_parameters(text)
            if kind is not None:
                fmt = media.format.upper()
                return _Found(kind[0], f"{fmt.lower()}:comment", f"{fmt} comment", kind[1])
    found = _from_exif(media, errors)
    if found is not None:
        return found
    return _from_xmp(media, errors)


class _PngText:
    """A PNG's text chunks by lower-cased keyword (writers disagree on case), bounded."""

    def __init__(self, info: Mapping[str, Any], errors: list[str]) -> None:
        self.errors = errors
        self.entries: dict[str, tuple[str, str]] = {}
        for key, value in info.items():
            if isinstance(key, str) and isinstance(value, str) and key != "XML:com.adobe.xmp":
                self.entries[key.lower()] = (key, value)

    def __contains__(self, lower: str) -> bool:
        return lower in self.entries

    def text(self, lower: str) -> str | None:
        entry = self.entries.get(lower)
        if entry is None:
            return None
        if len(entry[1]) > _MAX_TEXT:
            message = f"PNG text chunk '{entry[0]}' is over {_MAX_TEXT} characters; not read"
            if message not in self.errors:
                self.errors.append(message)
            return None
        return entry[1]

    def found(
        self, generator: str, lower: str, prompt: str | None = None, named: bool = False
    ) -> _Found:
        key = self.entries[lower][0]
        return _Found(generator, f"png:{key}", f"PNG text chunk '{key}'", prompt, named)


def _from_png_text(info: Mapping[str, Any], errors: list[str]) -> _Found | None:
    png = _PngText(info, errors)
    if not png.entries:
        return None

    for lower in _INVOKE_KEYS:
        if lower in png:
            value = png.text(lower)
            if lower == "dream" and (value is None or not _DREAM.match(value)):
                continue
            return png.found("InvokeAI", lower, _invoke_prompt(png))

    params = png.text("parameters")
    scheme = png.text("fooocus_scheme")
    if scheme is not None and scheme.strip().lower() in ("fooocus", "a1111"):
        kind = _classify_parameters(params) if params else None
        return png.found("Fooocus", "fooocus_scheme", kind[1] if kind else None)

    # ComfyUI save nodes that add A1111-style parameters beside the graph are still ComfyUI;
    # a specific name from the parameters (SwarmUI, Forge...) says more than the graph.
    kind = _classify_parameters(params) if params else None
    comfy = _comfy_png(png)
    if kind is not None and (kind[0] != GENERIC_A1111 or comfy is None):
        return png.found(kind[0], "parameters", kind[1])
    if comfy is not None:
        return comfy

    for lower in ("use_stable_diffusion_model", "stable diffusion model"):
        if lower in png:
            return png.found("Easy Diffusion", lower, png.text("prompt"))

    novelai = _novelai(png)
    if novelai is not None:
        return novelai

    description = png.text("description")
    if description is not None:
        match = _MJ_JOB.search(description)
        if match is not None:
            return png.found("Midjourney", "description", description[: match.start()])

    software = png.text("software")
    if software is not None:
        name = _software_generator(software)
        if name is not None:
            return png.found(name, "software", None, named=True)
    return None


def _comfy_png(png: _PngText) -> _Found | None:
    graph = _json(png.text("prompt"))
    if isinstance(graph, dict) and _is_comfy_graph(graph):
        return png.found("ComfyUI", "prompt", _comfy_positive(graph))
    if _is_comfy_workflow(_json(png.text("workflow"))):
        return png.found("ComfyUI", "workflow")
    return None


def _novelai(png: _PngText) -> _Found | None:
    settings = _json(png.text("comment"))
    prompt = _str(settings.get("prompt")) if isinstance(settings, dict) else None
    if prompt is None:
        prompt = png.text("description")
    software = png.text("software")
    if software is not None and software.strip().lower().startswith("novelai"):
        return png.found("NovelAI", "software", prompt, named=True)
    source = png.text("source")
    if source is not None and "novelai" in source.lower():
        return png.found("NovelAI", "source", prompt, named=True)
    if (
        isinstance(settings, dict)
        and "uc" in settings
        and "steps" in settings
        and ("sampler" in settings or "scale" in settings)
    ):
        return png.found("NovelAI", "comment", prompt)
    return None


def _invoke_prompt(png: _PngText) -> str | None:
    meta = _json(png.text("invokeai_metadata"))
    if isinstance(meta, dict):
        return _str(meta.get("positive_prompt"))
    meta = _json(png.text("sd-metadata"))
    if isinstance(meta, dict):
        image = meta.get("image")
        prompt = image.get("prompt") if isinstance(image, dict) else None
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
            prompt = prompt[0].get("prompt")
        return _str(prompt)
    dream = png.text("dream")
    match = _DREAM.match(dream) if dream is not None else None
    return match.group("prompt") if match else None


def _from_exif(media: Media, errors: list[str]) -> _Found | None:
    raw = media.data if media.format == "TIFF" else media.info.get("exif")
    if not isinstance(raw, bytes) or not raw:
        return None
    if len(raw) > _MAX_EXIF and media.format != "TIFF":
        errors.append(f"EXIF block is over {_MAX_EXIF} bytes; not read")
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        ifd0: dict[int, Any] = dict(exif)
    except Exception as exc:  # untrusted metadata: Pillow raises all sorts for damaged EXIF
        errors.append(f"EXIF unreadable ({type(exc).__name__})")
        return None
    sub: dict[int, Any] = {}
    # Reading the Exif IFD costs more than everything else here (maker notes), and only its
    # UserComment matters: skipped unless the block holds a UTF-16 comment or a marker.
    if _EXIF_IFD in ifd0 and any(marker in raw for marker in _USER_COMMENT_MARKERS):
        try:
            sub = dict(exif.get_ifd(_EXIF_IFD))
        except Exception as exc:
            errors.append(f"EXIF sub-IFD unreadable ({type(exc).__name__})")

    # Fooocus writes UserComment into IFD0 with Pillow's top-level Exif; piexif into the
    # Exif IFD where the standard puts it.
    comment = _user_comment(sub.get(_USER_COMMENT)) or _user_comment(ifd0.get(_USER_COMMENT))
    kind = _classify_parameters(comment) if comment else None
    if kind is not None:
        return _Found(kind[0], "exif:UserComment", "EXIF UserComment", kind[1])

    for tag, tag_name in _COMFY_EXIF_TAGS.items():
        value = ifd0.get(tag)
        if not isinstance(value, str) or len(value) > _MAX_TEXT:
            continue
        label, sep, body = value.partition(":")
        if not sep or label.strip().lower() not in ("prompt", "workflow"):
            continue
        graph = _json(body)
        if isinstance(graph, dict) and _is_comfy_graph(graph):
            prompt = _comfy_positive(graph)
            return _Found("ComfyUI", f"exif:{tag_name}", f"EXIF {tag_name}", prompt)
        if _is_comfy_workflow(graph):
            return _Found("ComfyUI", f"exif:{tag_name}", f"EXIF {tag_name}")

    description = ifd0.get(_IMAGE_DESCRIPTION)
    if isinstance(description, str) and len(description) <= _MAX_TEXT:
        match = _MJ_JOB.search(description)
        if match is not None:
            prompt = description[: match.start()]
            return _Found("Midjourney", "exif:ImageDescription", "EXIF ImageDescription", prompt)

    software = ifd0.get(_SOFTWARE)
    if isinstance(software, str):
        name = _software_generator(software)
        if name is not None:
            return _Found(name, "exif:Software", "EXIF Software", None, named=True)
    return None


def _from_xmp(media: Media, errors: list[str]) -> _Found | None:
    packet = xmp.find_packet(media)
    if packet is None or len(packet) > xmp.MAX_PACKET_BYTES:
        return None
    text = xmp.packet_text(packet)
    if not _names_generator_tool(text):
        return None
    try:
        values = xmp.read_properties(text, (xmp.CREATOR_TOOL, _XMP_USER_COMMENT, _XMP_DESCRIPTION))
    except xmp.XmpError as exc:
        errors.append(exc.message)
        return None
    tools = values.get(xmp.CREATOR_TOOL) or []
    name = _software_generator(tools[0]) if tools else None
    if name is None:
        return None
    prompt = None
    comments = values.get(_XMP_USER_COMMENT) or []
    settings = _json(comments[0]) if comments else None
    if isinstance(settings, dict):
        prompt = _str(settings.get("c")) or _str(settings.get("prompt"))
    descriptions = values.get(_XMP_DESCRIPTION) or []
    if prompt is None and descriptions and name == "Draw Things":
        # "prompt\n-negative\nSteps: ...": the prompt runs to the negative or settings line.
        lines = descriptions[0].splitlines()
        end = next(
            (i for i, line in enumerate(lines) if line.startswith(("-", "Steps:"))), len(lines)
        )
        prompt = "\n".join(lines[:end])
    return _Found(name, "xmp:CreatorTool", "XMP xmp:CreatorTool", prompt, named=True)


# -- what the text says -------------------------------------------------------------------------


def _classify_parameters(text: str) -> tuple[str, str | None] | None:
    """The generator and prompt behind an A1111-style ``parameters`` text or its JSON cousins."""
    if len(text) > _MAX_TEXT:
        return None
    stripped = text.strip()
    if stripped.startswith("{"):
        return _classify_json(_json(stripped))
    return _a1111(stripped)


def _classify_json(obj: Any) -> tuple[str, str | None] | None:
    if not isinstance(obj, dict):
        return None
    swarm = obj.get("sui_image_params")
    if isinstance(swarm, dict):
        return "SwarmUI", _str(swarm.get("prompt"))
    version = obj.get("version", obj.get("Version"))
    if isinstance(version, str) and "fooocus" in version.lower():
        return "Fooocus", _str(obj.get("prompt", obj.get("Prompt")))
    if "use_stable_diffusion_model" in obj:
        return "Easy Diffusion", _str(obj.get("prompt"))
    if "Stable Diffusion model" in obj:
        return "Easy Diffusion", _str(obj.get("Prompt"))
    # ComfyUI savers that put {"prompt": graph, "workflow": graph} in one EXIF field.
    graph = obj.get("prompt")
    if isinstance(graph, str):
        graph = _json(graph)
    if isinstance(graph, dict) and _is_comfy_graph(graph):
        return "ComfyUI", _comfy_positive(graph)
    if _is_comfy_workflow(obj.get("workflow")):
        return "ComfyUI", None
    return None


def _a1111(text: str) -> tuple[str, str | None] | None:
    lines = text.splitlines()
    # The settings line is the last one, but extensions append a few lines of their own.
    for at in range(len(lines) - 1, max(-1, len(lines) - 33), -1):
        line = lines[at]
        if _PARAMS_LINE.match(line) and sum(key in line for key in _PARAM_KEYS) >= 2:
            break
    else:
        return None
    head = lines[:at]
    negative = next(
        (i for i, line in enumerate(head) if line.startswith("Negative prompt:")), len(head)
    )
    prompt = "\n".join(head[:negative]).strip() or None
    settings = "\n".join(lines[at:])
    if "App: SD.Next" in settings:
        return "SD.Next", prompt
    if _FORGE_VERSION.search(settings):
        return "Forge", prompt
    if "Version: Fooocus" in settings:
        return "Fooocus", prompt
    if "Version: ComfyUI" in settings:
        return "ComfyUI", prompt
    return GENERIC_A1111, prompt


def _is_comfy_graph(graph: Mapping[str, Any]) -> bool:
    """A ComfyUI API prompt: every node an object with a ``class_type`` and ``inputs``."""
    seen = nodes = 0
    for node in graph.values():
        seen += 1
        if seen > _MAX_NODES:
            break
        if (
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), dict)
        ):
            nodes += 1
    return nodes > 0 and nodes * 2 >= min(seen, _MAX_NODES)


def _is_comfy_workflow(obj: Any) -> bool:
    """A ComfyUI editor workflow: a ``nodes`` list of typed nodes plus its link bookkeeping."""
    if not isinstance(obj, dict):
        return False
    nodes = obj.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return False
    if not ("links" in obj or "last_node_id" in obj):
        return False
    return any(
        isinstance(node, dict) and isinstance(node.get("type"), str) and "id" in node
        for node in nodes[:_MAX_NODES]
    )


def _comfy_positive(graph: Mapping[str, Any]) -> str | None:
    """Best effort: the text that the first sampler's ``positive`` input leads back to."""
    for count, node in enumerate(graph.values()):
        if count >= _MAX_NODES:
            break
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and "positive" in inputs:
            text = _follow_link(graph, inputs["positive"])
            if text:
                return text
    return None


def _follow_link(graph: Mapping[str, Any], ref: Any) -> str | None:
    for _ in range(_MAX_HOPS):
        if isinstance(ref, str):
            return ref if ref.strip() else None
        if not (isinstance(ref, list) and ref and isinstance(ref[0], str | int)):
            return None
        node = graph.get(str(ref[0]))
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            return None
        ref = next((inputs[key] for key in _COMFY_TEXT_INPUTS if key in inputs), None)
    return None


def _names_generator_tool(text: str) -> bool:
    """Whether some xmp:CreatorTool in the packet text may name a generator: a cheap look at
    the few characters after each mention, since parsing costs a hundred times more."""
    lowered = text.lower()
    start = 0
    for _ in range(8):
        at = lowered.find("creatortool", start)
        if at < 0:
            return False
        window = lowered[at + 11 : at + 211]
        if any(prefix in window for prefix, _ in _GENERATOR_SOFTWARE):
            return True
        start = at + 11
    return True  # a packet this repetitive is odd enough to deserve the full parse


def _software_generator(value: str) -> str | None:
    return tool_by_prefix(value, _GENERATOR_SOFTWARE)


def tool_by_prefix(value: str, table: Iterable[tuple[str, str]]) -> str | None:
    """The tool a software or encoder string names: the first (lowercase prefix, name) of
    ``table`` it starts with, as a whole word."""
    lowered = value.strip().lower()
    for prefix, name in table:
        if lowered.startswith(prefix):
            rest = lowered[len(prefix) : len(prefix) + 1]
            if not rest or not rest.isalpha():  # "NovelAI v3" yes, "Fooocusbar" no
                return name
    return None


def _user_comment(value: Any) -> str | None:
    """EXIF UserComment as text: an 8-byte charset prefix, then ASCII, UTF-16 or JIS."""
    if isinstance(value, str):
        return value.strip("\x00 \t\r\n") or None
    if not isinstance(value, bytes) or not value or len(value) > 4 * _MAX_TEXT:
        return None
    prefix, body = value[:8], value[8:]
    if prefix == b"UNICODE\x00":
        text = _utf16(body)
    elif prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        text = body.decode("utf-8", "replace")
    elif prefix == b"JIS\x00\x00\x00\x00\x00":
        text = body.decode("shift_jis", "replace")
    else:  # Fooocus and others store bare UTF-8
        text = value.decode("utf-8", "replace")
    return text.strip("\x00 \t\r\n") or None


def _utf16(body: bytes) -> str:
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", "replace")
    # The standard leaves the byte order open; piexif (Automatic1111) writes big-endian
    # whatever the TIFF header says. ASCII text puts its zero bytes first in big-endian.
    sample = body[:1024]
    big = sample[0::2].count(0) >= sample[1::2].count(0)
    body = body[: len(body) // 2 * 2]
    return body.decode("utf-16-be" if big else "utf-16-le", "replace")


def _json(text: str | None) -> Any:
    return parse_json(text, max_chars=_MAX_TEXT)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _prompt_sha256(prompt: str | None) -> str | None:
    if not prompt:
        return None
    text = prompt.strip()
    if not text:
        return None
    # tEXt chunks are Latin-1 by the standard, but tools write UTF-8 there anyway, and Pillow
    # then decodes it as Latin-1; undone so that the hash is the prompt's own.
    with contextlib.suppress(UnicodeError):
        text = text.encode("latin-1").decode("utf-8")
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
