"""The cards credit every leaf's source: grouped by licence then branch in collapsed sections (a taxonomy of
10,000 leaves opens on a dozen lines), every leaf linked at the release commit, the complete list in
attribution.csv/json, contributor text escaped, and the Hub's licence metadata right for a mixed set."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from labtax.records.release import LeafAttribution, LeafRecord, ReleaseEvaluation, ReleaseManifest
from labtax.release.card import CardOptions, DataFileRows, build_dataset_card, build_model_card
from labtax.release.credits import attribution_csv, attribution_json, credits, hub_license
from labtax.release.manifest import LeafChanges

COMMIT = "c" * 40
LICENCES = [  # (as written, SPDX id), in the proportions of a real taxonomy
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("CC-BY-4.0", "CC-BY-4.0"),
    ("Public Domain", "LicenseRef-Public-Domain"),
    ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
]
BRANCHES = ("knowledge", "compositional_skills", "foundational_skills")


def manifest_of(count: int) -> ReleaseManifest:
    leaves = []
    for number in range(count):
        written, spdx = LICENCES[number % len(LICENCES)]
        branch = BRANCHES[number % len(BRANCHES)]
        attribution = LeafAttribution(
            title=f"Article {number}",
            link=f"https://en.wikipedia.org/wiki/Article_{number}_(topic)",
            revision=f"oldid={1000 + number}",
            license=written,
            license_id=spdx,
            creators="Wikipedia contributors",
        )
        path = f"{branch}/topic{number % 97}/leaf{number}/qna.yaml"
        leaves.append(LeafRecord(path, f"{number:064x}", branch, "knowledge", attribution))
    return ReleaseManifest(
        version="v2.0.0",
        taxonomy_commit=COMMIT,
        leaves=leaves,
        data_files=[],
        teacher="teacher",
        base_model="org/base",
        hyperparameters={},
        evaluation=ReleaseEvaluation(overall={}, baseline={}),
        hub=None,
    )


def test_ten_thousand_leaves_are_credited_once_each_in_collapsed_groups_by_licence_then_branch() -> None:
    manifest = manifest_of(10_000)
    options = CardOptions(source_url="https://github.com/org/taxonomy")
    card = str(build_model_card(manifest, LeafChanges([], [], [], []), options))

    credits_part = card[card.index("## Credits") :]
    assert credits_part.count("<details>") == credits_part.count("</details>") == 3  # three licences
    assert "| CC-BY-SA-4.0 | 5,000 |\n| CC-BY-4.0 | 2,500 |\n| public domain | 2,500 |" in credits_part
    assert "<details><summary>CC-BY-SA-4.0: 5,000 leaves</summary>" in credits_part
    for number in (0, 4_999, 9_999):
        leaf = f"{BRANCHES[number % 3]}/topic{number % 97}/leaf{number}"
        url = f"https://github.com/org/taxonomy/blob/{COMMIT}/taxonomy/{leaf}/qna.yaml"
        assert credits_part.count(f"({url})") == 1
    assert "(https://en.wikipedia.org/wiki/Article_7_%28topic%29)" in credits_part  # brackets cannot end the link
    opening = credits_part[: credits_part.index("<details>")]
    assert len(opening.splitlines()) < 15  # what a reader sees before opening a group
    assert len(card.encode()) < 4_000_000

    rows = list(csv.DictReader(io.StringIO(attribution_csv(credits(manifest, None)).decode())))
    assert len(rows) == 10_000 and rows[0]["license_id"] in {spdx for _, spdx in LICENCES}
    assert len(json.loads(attribution_json(credits(manifest, None)))) == 10_000


def test_the_card_renders_as_tables_inside_collapsed_sections() -> None:
    from markdown_it import MarkdownIt

    manifest = manifest_of(300)
    card = str(build_model_card(manifest, LeafChanges([], [], [], []), CardOptions(source_url="https://x.org/t")))
    html = MarkdownIt("commonmark").enable("table").render(card[card.index("## Credits") :])
    assert html.count("<details>") == 3
    assert html.count("<tr>") == 300 + 3 * len(BRANCHES) + 1 + 3  # rows, headers per group, the licence table


def test_contributor_text_is_inert_in_the_cards_and_the_csv() -> None:
    manifest = manifest_of(1)
    attribution = LeafAttribution(
        title="</details><script>alert(1)</script> [click](javascript:alert(1)) | x",
        link="javascript:alert(1)",
        revision="`rm -rf`",
        license="CC-BY-4.0",
        license_id="CC-BY-4.0",
        creators='=HYPERLINK("https://evil.example")',
    )
    manifest.leaves = [LeafRecord("knowledge/x/qna.yaml", "0" * 64, "knowledge", "knowledge", attribution)]
    card = str(build_model_card(manifest, LeafChanges([], [], [], []), CardOptions()))
    credits_part = card[card.index("## Credits") :]
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(credits_part)
    assert "<script>" not in html and 'href="javascript' not in html and html.count("</details>") == 1
    assert "\\[click\\]" in credits_part and "\\| x" in credits_part
    assert credits_part.count("<details>") == credits_part.count("</details>") == 1
    row = next(csv.DictReader(io.StringIO(attribution_csv(credits(manifest, None)).decode())))
    assert row["creators"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["CC-BY-4.0", "CC-BY-4.0"], {"license": "cc-by-4.0"}),
        (["CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0"], {"license": ["apache-2.0", "cc-by-4.0", "cc-by-sa-4.0"]}),
        (
            ["CC-BY-4.0", "CC-BY-SA-4.0", "LicenseRef-Public-Domain"],
            {"license": "other", "license_name": "labtax-mixed-sources", "license_link": "attribution.csv"},
        ),
        ([None], {"license": "other", "license_name": "labtax-mixed-sources", "license_link": "attribution.csv"}),
    ],
)
def test_the_hub_licence_metadata_of_a_set_of_sources(ids: list[str | None], expected: dict[str, object]) -> None:
    manifest = manifest_of(len(ids))
    manifest.leaves = [
        LeafRecord(f"k/{n}/qna.yaml", "0" * 64, "knowledge", "knowledge", LeafAttribution("t", "", "", "x", spdx, "c"))
        for n, spdx in enumerate(ids)
    ]
    assert hub_license(credits(manifest, None)) == expected


def test_the_dataset_card_declares_both_phases_and_their_union_schema(tmp_path: Path) -> None:
    import datasets

    phase1 = {"messages": [{"role": "user", "content": "q"}], "metadata": {"leaf": "k", "form": "grounded"}}
    phase2 = {"messages": [{"role": "user", "content": "q"}], "metadata": {"leaf": "s", "replay": "phase1"}}
    (tmp_path / "phase1_knowledge.jsonl").write_text(json.dumps(phase1) + "\n")
    (tmp_path / "phase2_skills.jsonl").write_text(json.dumps(phase2) + "\n" + json.dumps(phase2) + "\n")
    files = [DataFileRows("phase1_knowledge.jsonl", 1, "1" * 64), DataFileRows("phase2_skills.jsonl", 2, "2" * 64)]
    card = str(build_dataset_card(manifest_of(4), files, tmp_path, CardOptions(dataset_repo_id="org/d"), "org/m"))
    (tmp_path / "README.md").write_text(card)

    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["license"] == "other" and metadata["license_link"] == "attribution.csv"
    loaded = datasets.load_dataset(str(tmp_path), cache_dir=str(tmp_path / ".cache"))
    assert {split: loaded[split].num_rows for split in loaded} == {"phase1_knowledge": 1, "phase2_skills": 2}
    assert loaded["phase1_knowledge"][0]["metadata"] == {"leaf": "k", "form": "grounded", "replay": None}
