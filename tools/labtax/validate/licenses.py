"""Reading the licence line of an attribution.txt: common spellings to SPDX ids, then the allow-list.

Contributors write "CC BY-SA 4.0", "Creative Commons Attribution-ShareAlike 4.0 International",
"cc-by-sa-4.0" or "Public Domain"; InstructLab's reviewers read all of these as the same licence. labtax
does too: `spdx_id` maps a spelling to its SPDX id (or None when it cannot tell), and the allow-list
(`[tool.labtax] licenses`) is compared on SPDX ids. Public-domain statements without a dedication
("Public Domain", "US Government work") map to `LicenseRef-Public-Domain`.
"""

from __future__ import annotations

import re

# Known SPDX ids, so that a spelling maps onto the exact id (its case and punctuation).
KNOWN_IDS = (
    "CC0-1.0",
    "CC-PDDC",
    "PDDL-1.0",
    "LicenseRef-Public-Domain",
    "CDLA-Permissive-1.0",
    "CDLA-Permissive-2.0",
    "CDLA-Sharing-1.0",
    "ODC-By-1.0",
    "ODbL-1.0",
    "Apache-2.0",
    "MIT",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "Unlicense",
    "GFDL-1.3-or-later",
    "GFDL-1.3-only",
    "CC-BY-2.0",
    "CC-BY-2.5",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-2.0",
    "CC-BY-SA-2.5",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-4.0",
    "CC-BY-NC-3.0",
    "CC-BY-NC-SA-4.0",
    "CC-BY-NC-SA-3.0",
    "CC-BY-ND-4.0",
    "CC-BY-ND-3.0",
    "CC-BY-NC-ND-4.0",
    "CC-BY-NC-ND-3.0",
)

# Words of spelled-out names, replaced by the short forms the SPDX ids use (applied in order).
_WORDS = (
    (r"creative\s*commons", "cc"),
    (r"attribution", "by"),
    (r"share[\s-]*alike", "sa"),
    (r"non[\s-]*commercial", "nc"),
    (r"no[\s-]*deriv(ative)?s?", "nd"),
    (r"\b(international|unported|generic|public\s+license|license|licence|version|v(?=\d))\b", ""),
    (r"\bzero\b", "0"),
)
_PUBLIC_DOMAIN = re.compile(
    r"^(public[\s-]*domain|pd|us\s+government\s+work|work\s+of\s+the\s+(us|united\s+states)\s+(federal\s+)?government"
    r"|(us|u\.s\.)\s+federal\s+government\s+work)(\s*\(.*\))?$"
)


def _key(text: str) -> str:
    """A spelling-insensitive key: lower case, long words shortened, punctuation and spaces dropped."""
    lowered = text.lower().strip()
    for pattern, replacement in _WORDS:
        lowered = re.sub(pattern, replacement, lowered)
    key = re.sub(r"[^a-z0-9]", "", lowered)
    # "4" and "4.0" are the same version.
    return re.sub(r"(\d)0$", r"\1", key) if re.search(r"\d0$", key) and not key.endswith("00") else key


_BY_KEY = {_key(spdx): spdx for spdx in KNOWN_IDS}
_BY_KEY[_key("CC0")] = "CC0-1.0"
_BY_KEY[_key("CC0 1.0 Universal")] = "CC0-1.0"


def spdx_id(text: str) -> str | None:
    """The SPDX id `text` names, or None when it is not a licence labtax recognises."""
    stripped = text.strip()
    if not stripped:
        return None
    if _PUBLIC_DOMAIN.match(stripped.lower()):
        return "LicenseRef-Public-Domain"
    return _BY_KEY.get(_key(stripped.removesuffix(" Universal")))


def is_restrictive(spdx: str) -> str | None:
    """Why a licence is excluded by default: non-commercial or no-derivatives (None otherwise)."""
    parts = spdx.upper().split("-")
    if "NC" in parts:
        return "it forbids commercial use (NC)"
    if "ND" in parts:
        return "it forbids derivative works (ND)"
    return None


def allowed_license(text: str, allowed: tuple[str, ...]) -> tuple[bool, str | None]:
    """(whether `text` names an allowed licence, its SPDX id when known)."""
    spdx = spdx_id(text)
    allowed_keys = {_key(a): a for a in allowed}
    if spdx is not None:
        return spdx in allowed or _key(spdx) in allowed_keys, spdx
    # A licence outside labtax's table: an exact (case-insensitive) entry of the allow-list still counts.
    return _key(text) in allowed_keys, None
