"""MkDocs hooks: the pages that are generated from the code at build time, so they cannot drift.

``reference/http-api.md`` is rendered from the OpenAPI schema that ``dignity.api`` serves at
``/openapi.json`` (the app is built, never started: no database, no network), and the schema
itself is published beside it as ``reference/openapi.json``. ``reference/errors.md`` is the
README's exit-status and error-code section, copied at build time so that one text stays the
source. The renderer is ours and small: each operation with its parameters, body and answers,
then each schema as a table of fields, linked to one another; generic renderers repeat every
schema inline with invented examples and made a page of about 1 MB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
_METHODS = ("get", "post", "put", "patch", "delete")
# The README section copied into reference/errors.md: from this heading to the next "## ".
_ERRORS_HEADING = "### Exit statuses"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    schema = _openapi()
    generated = {
        "reference/http-api.md": render_openapi(schema),
        "reference/openapi.json": json.dumps(schema, indent=1, sort_keys=True) + "\n",
        "reference/errors.md": _errors_page(),
    }
    for path, content in generated.items():
        files.append(File.generated(config, path, content=content))
    return files


def _openapi() -> dict[str, Any]:
    # Imported here so that `mkdocs build` fails with the import error, not at load time.
    from dignity.api import create_app

    schema: dict[str, Any] = create_app().openapi()
    return schema


def _errors_page() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.find(_ERRORS_HEADING)
    if start < 0:
        raise ValueError(f"README.md has no {_ERRORS_HEADING!r} section to copy")
    end = readme.find("\n## ", start)
    body = readme[start + len(_ERRORS_HEADING) : end if end >= 0 else len(readme)]
    intro = (
        "The CLI's exit statuses and the stable error codes, shared by the CLI and the HTTP API "
        "(HTTP errors are JSON `{code, message, detail}`). Copied from the README at build time.\n"
    )
    return f"# Exit statuses and error codes\n\n{intro}\n{body.strip()}\n"


def render_openapi(schema: Mapping[str, Any]) -> str:
    """Markdown for an OpenAPI 3 document: operations grouped by tag, then the schemas."""
    info = schema.get("info", {})
    out = [
        f"# HTTP API reference\n\n{info.get('title', '')} {info.get('version', '')}: "
        f"{info.get('description', '')}\n\n"
        "Generated at build time from the schema the service serves at `/openapi.json` "
        "([download it](openapi.json)); a running server also serves it interactively at "
        "`/docs` (Swagger UI from packaged files, no CDN).\n"
    ]
    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if isinstance(op, Mapping):
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((method, path, op))
    for tag in sorted(by_tag):
        out.append(f"## {tag}\n")
        for method, path, op in by_tag[tag]:
            out.append(_operation(method, path, op))
    components = schema.get("components", {}).get("schemas", {})
    if components:
        out.append("## Schemas\n")
        for name in sorted(components):
            out.append(_schema(name, components[name]))
    return "\n".join(out)


def _operation(method: str, path: str, op: Mapping[str, Any]) -> str:
    lines = [f"### `{method.upper()} {path}`\n"]
    for key in ("summary", "description"):
        if op.get(key) and (key == "summary" or op.get(key) != op.get("summary")):
            lines.append(f"{_one_line(op[key])}\n")
    params = [p for p in op.get("parameters", []) if isinstance(p, Mapping)]
    if params:
        lines.append("| parameter | in | type | required | description |\n|---|---|---|---|---|")
        for p in params:
            lines.append(
                f"| `{p.get('name')}` | {p.get('in')} | {_type(p.get('schema', {}))} | "
                f"{'yes' if p.get('required') else 'no'} | {_cell(p.get('description', ''))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if isinstance(body, Mapping):
        kinds = ", ".join(
            f"`{kind}` {_type(media.get('schema', {}))}"
            for kind, media in body.get("content", {}).items()
        )
        lines.append(f"Body{' (required)' if body.get('required') else ''}: {kinds}\n")
    responses = op.get("responses", {})
    if responses:
        lines.append("| answer | body |\n|---|---|")
        for status, answer in responses.items():
            content = answer.get("content", {})
            kinds = ", ".join(
                f"`{kind}` {_type(media.get('schema', {}))}".rstrip()
                for kind, media in content.items()
            )
            lines.append(f"| {status} {_cell(answer.get('description', ''))} | {kinds} |")
        lines.append("")
    return "\n".join(lines)


def _schema(name: str, body: Mapping[str, Any]) -> str:
    lines = [f"### {name} {{#{_anchor(name)}}}\n"]
    if body.get("description"):
        lines.append(f"{_one_line(body['description'])}\n")
    properties = body.get("properties", {})
    if properties:
        required = set(body.get("required", []))
        lines.append("| field | type | required | description |\n|---|---|---|---|")
        for field, spec in properties.items():
            lines.append(
                f"| `{field}` | {_type(spec)} | {'yes' if field in required else 'no'} | "
                f"{_cell(spec.get('description', ''))} |"
            )
        lines.append("")
    elif body.get("enum"):
        lines.append(f"One of {', '.join(f'`{v}`' for v in body['enum'])}.\n")
    elif body.get("type"):
        lines.append(f"Type: {_type(body)}\n")
    return "\n".join(lines)


def _type(spec: Any) -> str:
    """A schema as a short type expression, named schemas linked to their section."""
    if not isinstance(spec, Mapping):
        return ""
    ref = spec.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(spec.get(key), list):
            return " or ".join(_unique(_type(s) for s in spec[key]))
    kind = spec.get("type")
    if kind == "array":
        return f"array of {_type(spec.get('items', {}))}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), Mapping):
        return f"object of {_type(spec['additionalProperties'])}"
    if isinstance(spec.get("enum"), list):
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    text = str(kind) if kind else "any"
    return f"{text} ({spec['format']})" if spec.get("format") else text


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _anchor(name: str) -> str:
    # Set explicitly (attr_list) so that a tag named like a schema ("health") cannot take it.
    return "schema-" + re.sub(r"[^\w-]+", "-", name)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _cell(text: Any) -> str:
    return _one_line(text).replace("|", "\\|")
