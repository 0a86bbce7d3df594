"""Knowledge documents are read from git objects only: links, submodules and special entries are refused,
fetches have a time limit, credentials in a URL never reach the output, and PDFs give the same text to
validation and generation. Real git repositories, a real TCP server that never answers, PDFs built here."""

from __future__ import annotations

import ctypes
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import git
from labtax.config import load_config
from labtax.documents import DocumentError, read_documents
from labtax.taxonomy.leaf import DocumentRef, git_tree_id
from test_validate_support import Project, knowledge_yaml, make_project, run_cli

SECRET = "HF_TOKEN=hf_do_not_leak_this"


def build_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with the given lines of text, made by PDFium itself (pypdfium2's raw API)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    document = pdfium.PdfDocument.new()
    page = document.new_page(612, 792)
    font = raw.FPDFText_LoadStandardFont(document.raw, b"Helvetica")
    for number, line in enumerate(lines):
        text = raw.FPDFPageObj_CreateTextObj(document.raw, font, 12.0)
        buffer = ctypes.create_string_buffer((line + "\x00").encode("utf-16-le"))
        raw.FPDFText_SetText(text, ctypes.cast(buffer, ctypes.POINTER(raw.FPDF_WCHAR)))
        raw.FPDFPageObj_Transform(text, 1, 0, 0, 1, 72, 720 - 16 * number)
        raw.FPDFPage_InsertObject(page.raw, text)
    raw.FPDFPage_GenerateContent(page.raw)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def local_leaf(project: Project, name: str = "notes", pattern: str = "*.md") -> str:
    tree = project.documents(name)
    return project.leaf(
        f"knowledge/{name}", knowledge_yaml(tree, repo=f"documents/{name}").replace("'*.md'", f"'{pattern}'")
    )


def test_a_symlink_in_local_documents_is_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "environ"
    secret.write_text(SECRET)
    project = make_project(tmp_path / "p")
    project.documents()
    (project.root / "documents/notes/token.md").symlink_to(secret)
    project.git_add("documents/notes")
    tree = git_tree_id(project.root / "documents/notes")
    file = project.leaf("knowledge/notes", knowledge_yaml(tree))
    [check] = project.only(rule="document-check")
    assert (check.file, check.line) == (file, 7)
    assert "'token.md' (a symbolic link)" in check.message and "must be regular files" in check.message
    with pytest.raises(DocumentError) as raised:
        read_documents(project.root, DocumentRef("documents/notes", tree, ("*.md",)))
    assert SECRET not in str(raised.value)
    # The leaf hash never read the target either: the link is left out of the selection.
    [leaf] = project.validate().leaves
    assert leaf.document is not None


def test_a_submodule_in_remote_documents_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    git(inner, "init", "-q")
    (inner / "secret.md").write_text(SECRET)
    git(inner, "add", "-A")
    git(inner, "commit", "-qm", "inner")
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "guides/guide.md").write_text("# Guide\n")
    (docs / "guides/link.md").symlink_to("/proc/self/environ")
    git(docs, "init", "-q")
    git(docs, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "guides/sub")
    git(docs, "add", "-A")
    git(docs, "commit", "-qm", "docs")
    commit = git(docs, "rev-parse", "HEAD").strip()
    project = make_project(tmp_path / "p", extra_toml='[tool.labtax.documents]\nsources = ["file"]\n')
    project.leaf("knowledge/k", knowledge_yaml(commit, repo=docs.as_uri()).replace("'*.md'", "'guides/**'"))
    [check] = project.only(rule="document-check", check_documents=True)
    assert "'guides/link.md' (a symbolic link)" in check.message
    assert "'guides/sub' (a submodule)" in check.message
    # A narrower pattern that selects only regular files is fine.
    project.leaf("knowledge/k", knowledge_yaml(commit, repo=docs.as_uri()).replace("'*.md'", "'guides/guide.md'"))
    assert project.only(rule="document-check", check_documents=True) == []


def test_local_documents_are_read_from_git_not_from_the_disk(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    tree = project.documents()
    git(project.root, "commit", "-qm", "documents")
    reference = DocumentRef("documents/notes", tree, ("*.md",))
    before = read_documents(project.root, reference)
    assert [f.path for f in before] == ["intro.md", "more.md"]
    # Not added to git: the directory matches the pin but its objects are not there.
    fresh = make_project(tmp_path / "q")
    fresh.write("documents/notes/a.md", "# A\n")
    tree_id = git_tree_id(fresh.root / "documents/notes")
    git(fresh.root, "init", "-q")
    with pytest.raises(DocumentError, match="not in git; labtax reads documents from git objects only"):
        read_documents(fresh.root, DocumentRef("documents/notes", tree_id, ("*.md",)))
    # Staged only (the pre-commit case): the tree is written from the index, as `git commit` would.
    git(fresh.root, "add", "documents")
    [staged] = read_documents(fresh.root, DocumentRef("documents/notes", tree_id, ("*.md",)))
    assert staged.data == b"# A\n"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_server_that_never_answers_is_given_up_on_within_the_limit(tmp_path: Path, silent_server: int) -> None:
    toml = '[tool.labtax.documents]\nfetch_timeout_s = 2\nsources = ["git", "http"]\n'
    project = make_project(tmp_path / "p", extra_toml=toml)
    commit = "a" * 40
    project.leaf("knowledge/git", knowledge_yaml(commit, repo=f"git://127.0.0.1:{silent_server}/docs.git"))
    project.leaf(
        "knowledge/http", knowledge_yaml(commit, repo=f"http://user:s3cr3t@127.0.0.1:{silent_server}/docs.git")
    )
    start = time.monotonic()
    result = run_cli(project.root, "validate", "--check-documents", fresh_process=True, timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    checks = [line for line in result.stdout.splitlines() if "[document-check]" in line]
    assert len(checks) == 2, result.stdout
    assert all("no answer within 2 s" in line for line in checks)
    assert elapsed < 20  # two fetches of 2 s each, plus start-up; a hang would hit the 60 s timeout
    # The credentials of the URL never reach the output.
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "http://***@127.0.0.1" in result.stdout


def test_credentials_in_a_repo_url_never_reach_any_output(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", extra_toml='[tool.labtax.documents]\nsources = ["file", "https"]\n')
    url = "https://contributor:ghp_t0ken@127.0.0.1:1/docs.git"
    project.leaf("knowledge/a", knowledge_yaml("abc", repo=url))  # document-commit: short pin
    project.leaf("knowledge/b", knowledge_yaml("b" * 40, repo=url + " x"))  # document-repo: not a URL
    project.leaf("knowledge/c", knowledge_yaml("c" * 40, repo=url))  # document-check: connection refused
    for output_format in ("text", "json", "github"):
        result = run_cli(project.root, "validate", "--check-documents", "--format", output_format)
        assert result.returncode == 1
        assert "ghp_t0ken" not in result.stdout + result.stderr, output_format
    assert "https://***@127.0.0.1:1/docs.git" in run_cli(project.root, "validate", "--check-documents").stdout


def test_a_pdf_document_gives_the_same_text_to_validation_and_generation(tmp_path: Path) -> None:
    from labtax.sdg.params import GenerationParams
    from labtax.sdg.run import prepare_chunks
    from labtax.validate import validate_paths

    project = make_project(tmp_path / "p")
    project.write("documents/report/report.pdf", build_pdf(["Tides rise twice a day.", "The Moon pulls the sea."]))
    project.write("documents/report/scan.pdf", build_pdf([]))  # no text layer
    project.git_add("documents/report")
    tree = git_tree_id(project.root / "documents/report")
    project.leaf("knowledge/good", knowledge_yaml(tree, repo="documents/report").replace("'*.md'", "report.pdf"))
    project.leaf("knowledge/scan", knowledge_yaml(tree, repo="documents/report").replace("'*.md'", "scan.pdf"))
    config = load_config(start=project.root)
    result = validate_paths(config)
    checks = {d.file.split("/")[2]: d.message for d in result.diagnostics if d.rule == "document-check"}
    assert list(checks) == ["scan"]
    assert "scan.pdf is a PDF without a text layer" in checks["scan"]
    leaves = {leaf.path.split("/")[1]: leaf for leaf in result.leaves}
    [chunk] = prepare_chunks(leaves["good"], project.root, GenerationParams(), lambda text: [(0, len(text))])
    assert "Tides rise twice a day." in chunk.text and "The Moon pulls the sea." in chunk.text
    with pytest.raises(Exception, match=r"scan\.pdf is a PDF without a text layer"):
        prepare_chunks(leaves["scan"], project.root, GenerationParams(), lambda text: [(0, len(text))])


def test_outside_git_documents_are_read_as_git_would_store_them(tmp_path: Path) -> None:
    """A copy of a taxonomy outside git has no objects: the pin is checked against the files, read without
    following links, and a link or a FIFO in the selection is refused as it is in git."""
    import os

    secret = tmp_path / "token"
    secret.write_text(SECRET)
    project = make_project(tmp_path / "p")
    project.write("documents/notes/a.md", "# A\n")
    tree = git_tree_id(project.root / "documents/notes")
    [document] = read_documents(project.root, DocumentRef("documents/notes", tree, ("*.md",)))
    assert (document.path, document.data) == ("a.md", b"# A\n")
    (project.root / "documents/notes/link.md").symlink_to(secret)
    os.mkfifo(project.root / "documents/notes/pipe.md")
    tree = git_tree_id(project.root / "documents/notes")
    with pytest.raises(DocumentError) as raised:
        read_documents(project.root, DocumentRef("documents/notes", tree, ("*.md",)))
    assert "'link.md' (a symbolic link)" in str(raised.value) and "'pipe.md' (not a regular file)" in str(raised.value)
    assert SECRET not in str(raised.value)
