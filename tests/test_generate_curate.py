"""Generation → curation end to end: the real CLI, the stand-in teacher on 127.0.0.1, no hand-made files.

What one stage writes is what the next one reads; these tests hold the two to each other."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO_ROOT, git
from labtax.cli import main
from openai_server import running_server

LEAVES = (
    "compositional_skills/writing/freeform/haiku",
    "foundational_skills/reasoning/unit_conversion",
    "knowledge/science/oceanography/ocean_tides",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    for leaf in LEAVES:
        shutil.copytree(REPO_ROOT / "taxonomy" / leaf, root / "taxonomy" / leaf)
    shutil.copytree(REPO_ROOT / "documents" / "ocean_tides", root / "documents" / "ocean_tides")
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n')
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "taxonomy")
    monkeypatch.chdir(root)
    return root


def generate(url: str, out: Path) -> int:
    return main(["generate", "-o", str(out), "--teacher-url", url, "--teacher-model", "fake-teacher", "--quiet",
                 "--target", "6"])  # fmt: skip


def curate(gen: Path, out: Path) -> int:
    return main(["curate", "--samples", str(gen), "--output", str(out), "--quiet"])


def test_identical_inputs_give_byte_identical_curation_whether_generated_or_cached(project: Path) -> None:
    """A rerun of generation reuses its cache; nothing about the data changed, so neither may curation.json
    nor any hash release.json records (the release hashes every curated file)."""
    from labtax.release.manifest import hash_data_files

    gen = project / "gen"
    with running_server() as server:
        assert generate(server.url, gen) == 0
        assert curate(gen, project / "first" / "data") == 0
        sent = server.chat_requests
        assert generate(server.url, gen) == 0  # every leaf from the cache
        assert server.chat_requests == sent
        assert curate(gen, project / "second" / "data") == 0
    names = sorted(p.name for p in (project / "first" / "data").iterdir())
    assert "curation.json" in names
    assert names == sorted(p.name for p in (project / "second" / "data").iterdir())
    for name in names:
        first = (project / "first" / "data" / name).read_bytes()
        assert first == (project / "second" / "data" / name).read_bytes(), f"{name} differs between identical runs"
    hashes = [hash_data_files(project / run, sorted((project / run / "data").iterdir())) for run in ("first", "second")]
    assert hashes[0] == hashes[1]
