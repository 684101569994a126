"""The one Jinja2 environment for every page dignity renders on the server: the transparency
report (:mod:`dignity.takedown.report`, also written to a file by ``dignity report --format
html``) and the statement of reasons (:mod:`dignity.api.notices`).

Templates live in ``web/templates`` inside the package. Autoescaping is on for every template
whatever its name, so a value reaches the page as text unless a template says otherwise, and an
undefined name is an error rather than an empty string, so a renamed field cannot silently drop
out of a page. Nothing here imports the web framework: the core renders the report with it too.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined


@cache
def environment() -> Environment:
    """The shared environment (built once per process; Jinja2 caches compiled templates)."""
    return Environment(
        loader=PackageLoader("dignity.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **context: object) -> str:
    """The template ``name`` (a fixed file name chosen by the caller) filled with ``context``."""
    return environment().get_template(name).render(**context)


__all__ = ["environment", "render"]
