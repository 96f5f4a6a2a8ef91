"""The Jinja2 environment: autoescaped, strict, with a config folder overriding files one by one."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
"""The project's templates folder (top level of the checkout)."""


@functools.lru_cache(maxsize=8)
def environment(override: Path | None = None) -> jinja2.Environment:
    """Templates from ``override`` first, then the project's; undefined variables are errors.

    Cached: compiled templates are reused across the thousand messages of a week."""
    folders = [str(p) for p in (override, TEMPLATES) if p is not None]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
