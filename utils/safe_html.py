"""What a report takes from a results folder, made safe to hand to others: markdown's HTML sanitised by an
allow-list (nh3), file links as quoted relative paths, and only files that resolve inside the folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import nh3

TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "a", "em", "strong", "code", "pre", "span", "div", "ul", "ol",
        "li", "blockquote", "table", "thead", "tbody", "tr", "th", "td", "br", "hr", "img", "sub", "sup", "del"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"},
              "ol": {"start"}, **{f"h{k}": {"id"} for k in range(1, 7)}}
URL_SCHEMES = {"http", "https"}   # besides these, only relative and '#' links survive


def sanitise(html: str) -> str:
    """`html` with every tag, attribute and link scheme outside the allow-lists removed (no script, no handler,
    no `javascript:` or `data:` link)."""
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES)


def relative_href(relative: str) -> str:
    """A link to a file by its relative path inside the folder, URL-quoted, so that no name reads as a scheme
    (`javascript:x` becomes `javascript%3Ax`, a file name)."""
    return quote(relative, safe="/")


def outside(root: Path, path: Path) -> Path | None:
    """Where `path` resolves to if that is outside `root` (a symlink leading out), else None."""
    target = path.resolve()
    return None if target.is_relative_to(root.resolve()) else target
