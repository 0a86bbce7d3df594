"""Credit where it is due: every leaf's attribution.txt, as the model card, the dataset card and the files
beside them publish it.

A release credits every source it was trained on: title, link, revision, creators and licence of each
leaf's work, with a link to the leaf at the release commit. For a taxonomy of 10,000 leaves that is a
long list, so the cards group it by licence (largest group first), then by taxonomy branch, each group
in a collapsed `<details>` section, and the complete list is also published as `attribution.csv` and
`attribution.json` beside each card (one row per leaf, for people and programs alike).

Everything here comes from `release.json` (`LeafRecord.attribution`): the cards say exactly what the
manifest records. Contributor text is untrusted: it is escaped for markdown and tables, links are
kept only when they are http(s) URLs (credentials removed) or paths inside this repository.

The Hub's `license` metadata takes one id from its list (https://huggingface.co/docs/hub/repositories-licenses),
or a list of them, or `other` with a `license_name` and `license_link`. `hub_license` picks: one Hub id when
every source has the same licence; the list when each has a Hub id; otherwise `other`, named
`labtax-mixed-sources` and linked to the attribution file that lists each leaf's licence.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from labtax.markdown import safe_url, text
from labtax.output import redact_credentials
from labtax.records.release import LeafAttribution, ReleaseManifest
from labtax.taxonomy.leaf import Attribution

ATTRIBUTION_CSV = "attribution.csv"
ATTRIBUTION_JSON = "attribution.json"
MIXED_LICENSE_NAME = "labtax-mixed-sources"
UNKNOWN_LICENSE = "(no licence given)"

# SPDX id -> the Hub's licence id, for the licences labtax's allow-list can hold; an id missing here
# (a plain public-domain statement, LicenseRef-*) has no Hub id and makes the set `other`.
HUB_LICENSES = {
    "Apache-2.0": "apache-2.0",
    "MIT": "mit",
    "BSD-2-Clause": "bsd-2-clause",
    "BSD-3-Clause": "bsd-3-clause",
    "Unlicense": "unlicense",
    "CC0-1.0": "cc0-1.0",
    "CC-BY-2.0": "cc-by-2.0",
    "CC-BY-2.5": "cc-by-2.5",
    "CC-BY-3.0": "cc-by-3.0",
    "CC-BY-4.0": "cc-by-4.0",
    "CC-BY-SA-3.0": "cc-by-sa-3.0",
    "CC-BY-SA-4.0": "cc-by-sa-4.0",
    "CC-BY-NC-4.0": "cc-by-nc-4.0",
    "CC-BY-NC-SA-4.0": "cc-by-nc-sa-4.0",
    "CC-BY-ND-4.0": "cc-by-nd-4.0",
    "CDLA-Permissive-1.0": "cdla-permissive-1.0",
    "CDLA-Permissive-2.0": "cdla-permissive-2.0",
    "CDLA-Sharing-1.0": "cdla-sharing-1.0",
    "ODC-By-1.0": "odc-by",
    "ODbL-1.0": "odbl",
    "PDDL-1.0": "pddl",
    "GFDL-1.3-only": "gfdl",
    "GFDL-1.3-or-later": "gfdl",
}
_LICENSE_NAMES = {"LicenseRef-Public-Domain": "public domain", "CC-PDDC": "public domain (CC-PDDC)"}


def attribution_record(attribution: Attribution | None) -> LeafAttribution | None:
    """A leaf's attribution.txt as release.json records it (credentials in its link removed)."""
    if attribution is None:
        return None
    from labtax.validate.licenses import spdx_id

    fields = attribution.fields
    license_text = fields.get("License of the work", "").strip()
    return LeafAttribution(
        title=fields.get("Title of work", "").strip(),
        link=redact_credentials(fields.get("Link to work", "").strip()),
        revision=fields.get("Revision", "").strip(),
        license=license_text,
        license_id=spdx_id(license_text) if license_text else None,
        creators=fields.get("Creator names", "").strip(),
    )


@dataclass(frozen=True)
class Credit:
    """One leaf's row in the cards and the attribution files."""

    leaf: str  # Leaf.path
    branch: str
    leaf_url: str | None  # the leaf's qna.yaml at the release commit
    title: str
    work_url: str | None  # the work's link, when it is a URL or a path of this repository we can link to
    link: str  # the work's link as written (credentials removed)
    revision: str
    license: str  # a display name: the SPDX id when recognised, else the text as written
    license_id: str | None
    creators: str

    def as_json(self) -> dict[str, str | None]:
        return {
            "leaf": self.leaf,
            "branch": self.branch,
            "leaf_url": self.leaf_url,
            "title": self.title,
            "link": self.link,
            "work_url": self.work_url,
            "revision": self.revision,
            "license": self.license,
            "license_id": self.license_id,
            "creators": self.creators,
        }


def repository_url(source_url: str | None, commit: str, path: str, kind: str = "blob") -> str | None:
    """The web URL of `path` in this repository at `commit` (GitHub-style), when the repository's URL is known."""
    if not source_url:
        return None
    return f"{source_url.rstrip('/')}/{kind}/{commit}/{quote(path.strip('/'))}"


def credits(manifest: ReleaseManifest, source_url: str | None, taxonomy_dir: str = "taxonomy") -> list[Credit]:
    """Every leaf of the release with its attribution, sorted by leaf path."""
    prefix = taxonomy_dir.strip("/. ")
    rows = []
    for leaf in sorted(manifest.leaves, key=lambda item: item.path):
        given = leaf.attribution or LeafAttribution("", "", "", "", None, "")
        leaf_path = f"{prefix}/{leaf.path}" if prefix else leaf.path
        rows.append(
            Credit(
                leaf=leaf.path,
                branch=leaf.branch or leaf.path.split("/", 1)[0],
                leaf_url=repository_url(source_url, manifest.taxonomy_commit, leaf_path),
                title=given.title,
                work_url=_work_url(given.link, source_url, manifest.taxonomy_commit),
                link=given.link,
                revision=given.revision,
                license=given.license_id or given.license or UNKNOWN_LICENSE,
                license_id=given.license_id,
                creators=given.creators,
            )
        )
    return rows


def _work_url(link: str, source_url: str | None, commit: str) -> str | None:
    """An http(s) URL as is; a relative path (documents kept in this repository) at the release commit."""
    if re.match(r"^https?://", link, re.IGNORECASE):
        parts = urlsplit(link)
        return link if parts.netloc and "@" not in parts.netloc else None
    # A path of this repository (documents/ocean_tides/): no scheme, no spaces, nothing outside the tree.
    if not _REPOSITORY_PATH.fullmatch(link) or ".." in link.split("/") or link.lower() == "n/a":
        return None
    return repository_url(source_url, commit, link, kind="tree" if link.endswith("/") else "blob")


_REPOSITORY_PATH = re.compile(r"[\w.-]+(/[\w.-]+)*/?")


# --- the Hub's licence metadata ----------------------------------------------------------------------


def license_label(license_id: str) -> str:
    return _LICENSE_NAMES.get(license_id, license_id)


def hub_license(rows: Sequence[Credit], link: str = ATTRIBUTION_CSV) -> dict[str, Any]:
    """The `license` metadata of a card over these sources (and `license_name`/`license_link` for `other`)."""
    hub_ids = [HUB_LICENSES.get(row.license_id or "") for row in rows]
    distinct = sorted({item for item in hub_ids if item})
    if rows and all(hub_ids) and len(distinct) == 1:
        return {"license": distinct[0]}
    if rows and all(hub_ids):
        return {"license": distinct}
    return {"license": "other", "license_name": MIXED_LICENSE_NAME, "license_link": link}


def leaves(count: int) -> str:
    return f"{count:,} leaf" if count == 1 else f"{count:,} leaves"


def license_counts(rows: Sequence[Credit]) -> list[tuple[str, int]]:
    """Licences by the number of leaves under them, largest first (ties by name)."""
    counts = Counter(row.license for row in rows)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


# --- markdown -----------------------------------------------------------------------------------------


def _link(label: str, url: str | None) -> str:
    target = safe_url(url) if url else None
    shown = text(label) or "(untitled)"
    return f"[{shown}]({target})" if target else shown


def credits_markdown(rows: Sequence[Credit], *, files_note: str) -> list[str]:
    """The credits as markdown: a summary table of licences, then every leaf, grouped by licence and branch
    in collapsed sections (readable for 10,000 leaves: the page opens on a dozen lines)."""
    if not rows:
        return ["No leaf was released.", ""]
    lines = ["| licence | leaves |", "|---|--:|"]
    lines += [f"| {text(license_label(name))} | {count:,} |" for name, count in license_counts(rows)]
    lines += ["", files_note, ""]
    by_license: dict[str, list[Credit]] = {}
    for row in rows:
        by_license.setdefault(row.license, []).append(row)
    for name, _ in license_counts(rows):
        group = by_license[name]
        lines += [f"<details><summary>{text(license_label(name))}: {leaves(len(group))}</summary>", ""]
        by_branch: dict[str, list[Credit]] = {}
        for row in group:
            by_branch.setdefault(row.branch, []).append(row)
        for branch in sorted(by_branch):
            members = by_branch[branch]
            lines += [f"**{text(branch)}** ({len(members):,})", ""]
            lines += ["| leaf | work | revision | creators |", "|---|---|---|---|"]
            for row in members:
                leaf_name = row.leaf.removesuffix("/qna.yaml")
                lines.append(
                    f"| {_link(leaf_name, row.leaf_url)} | {_link(row.title, row.work_url)} "
                    f"| {text(row.revision)} | {text(row.creators)} |"
                )
            lines.append("")
        lines += ["</details>", ""]
    return lines


# --- the attribution files ----------------------------------------------------------------------------

CSV_COLUMNS = ("leaf", "branch", "title", "link", "revision", "license", "license_id", "creators", "leaf_url")


def attribution_csv(rows: Sequence[Credit]) -> bytes:
    """One row per leaf; cells that a spreadsheet would run as a formula are prefixed with a quote."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = row.as_json()
        writer.writerow([_csv_cell(values[column] or "") for column in CSV_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def _csv_cell(value: str) -> str:
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def attribution_json(rows: Sequence[Credit]) -> bytes:
    return (json.dumps([row.as_json() for row in rows], indent=1, ensure_ascii=False) + "\n").encode("utf-8")
