"""Untrusted text in markdown: contributor and teacher text made inert wherever labtax writes markdown
(the reviewer's report, the precheck comment, eval.md, the release notes, the model and dataset cards).

One place, so every page escapes alike: a leaf path, a title or an answer cannot inject HTML, break a
table, end a link early, mention a user or spoof a marker.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]|~!#<>&()])")


def text(value: str) -> str:
    """Untrusted text as inline markdown that renders literally: one line, no HTML, no mentions."""
    one_line = " ".join(value.split())
    escaped = _INLINE_SPECIAL.sub(
        lambda m: {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(m.group(1), "\\" + m.group(1)), one_line
    )
    return escaped.replace("@", "@\u200b")  # a zero-width space keeps GitHub from notifying @names


def code(value: str) -> str:
    """Untrusted text as a code span (safe in a table cell: pipes are escaped, as GFM requires)."""
    one_line = " ".join(value.split()) or " "
    longest = max((len(run) for run in re.findall(r"`+", one_line)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {one_line} " if one_line.startswith("`") or one_line.endswith("`") else one_line
    return f"{fence}{padded}{fence}".replace("|", "\\|")


def safe_url(url: str) -> str | None:
    """`url` when it is a plain http(s) URL, percent-quoted so it cannot end a markdown link early."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(url.strip(), safe=":/?#[]@!$&'*+,;=%~.-_").replace("(", "%28").replace(")", "%29")


def link(label: str, url: str | None) -> str:
    # A contributor's URL may carry credentials (an attribution's link to a private mirror): never shown.
    from labtax.output import redact_credentials

    target = safe_url(redact_credentials(url)) if url else None
    return f"[{text(redact_credentials(label))}]({target})" if target else text(redact_credentials(label))
