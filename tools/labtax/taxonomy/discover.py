"""Finding leaves: which files to validate, and which misnamed or misplaced files to report.

A leaf is a file named exactly `qna.yaml` under a known branch of the taxonomy root. Look-alikes
(`qna.yml`, `QNA.yaml`, `qna.yaml.txt`...) are reported, never silently skipped; so are symlinks
that point outside the project and directories named `qna.yaml`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from labtax.config import Config
from labtax.errors import Diagnostic, UsageError
from labtax.taxonomy.leaf import ATTRIBUTION_FILE, BRANCHES, LEAF_FILE

_SKIP_DIRS = {"node_modules", "__pycache__", "venv"}


@dataclass
class Discovery:
    leaf_files: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    refused_leaves: int = 0  # paths named qna.yaml refused here (a symlink out of the repository, a directory)


def _relative(path: Path, root: Path) -> Path | None:
    """`path` relative to `root` (a resolved directory), also when `path` was reached through a symlinked
    directory (a working copy under a symlink, macOS's /tmp). The file's own name is not resolved."""
    absolute = path.absolute()
    try:
        return absolute.relative_to(root)
    except ValueError:
        pass
    try:
        return (absolute.parent.resolve() / absolute.name).relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return None


def display_path(path: Path, config: Config) -> str:
    """A path as diagnostics show it: relative to the project root when inside it (GitHub needs that)."""
    relative = _relative(path, config.project_root)
    shown = relative.as_posix() if relative is not None else path.absolute().as_posix()
    # A name that is not UTF-8 arrives with surrogates, which a strict stdout cannot print.
    return shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def taxonomy_relative(path: Path, config: Config) -> PurePosixPath | None:
    """The path under the taxonomy root, or None when it lies outside."""
    relative = _relative(path, config.taxonomy_root)
    return PurePosixPath(relative.as_posix()) if relative is not None else None


# qna.yml, QNA.yaml, Qna.YAML, qna.yaml.txt, qna_v2.yaml, "qna .yaml", qna.json: anything a contributor
# may have meant as a leaf. InstructLab silently skips such files; labtax reports them.
# .pre-commit-hooks.yaml passes the same names to the hook (keep the two in step).
_LOOK_ALIKE = re.compile(r"\s*qna\s*(\.[^/]*)?|\s*qna[^/]*\.ya?ml[^/]*", re.IGNORECASE)


def looks_like_leaf_file(name: str) -> bool:
    """A file name that is probably meant to be `qna.yaml` (but is not exactly that)."""
    return name != LEAF_FILE and bool(_LOOK_ALIKE.fullmatch(name)) and not name.lower().endswith(".md")


def is_outside_project(path: Path, config: Config) -> bool:
    try:
        path.resolve().relative_to(config.project_root)
    except ValueError:
        return True
    except (OSError, RuntimeError):  # a symlink loop
        return True
    return False


def discover(config: Config, paths: Iterable[Path] | None = None) -> Discovery:
    """Collect the qna.yaml files under `paths` (default: the taxonomy root) and naming problems."""
    found = Discovery()
    targets = list(paths) if paths else [config.taxonomy_root]
    if not paths and not config.taxonomy_root.is_dir():
        raise UsageError(
            f"taxonomy root {config.taxonomy_root} is not a directory; pass --root, or set "
            "[tool.labtax] taxonomy in pyproject.toml"
        )
    seen: set[Path] = set()
    for target in targets:
        if not target.exists() and not target.is_symlink():
            raise UsageError(f"{target}: no such file or directory")
        for leaf_file, diagnostic in _scan(target, config, explicit=True):
            if diagnostic is not None:
                found.diagnostics.append(diagnostic)
                found.refused_leaves += PurePosixPath(diagnostic.file).name == LEAF_FILE
            elif leaf_file is not None and leaf_file.absolute() not in seen:
                seen.add(leaf_file.absolute())
                found.leaf_files.append(leaf_file)
    return found


def _problem(path: Path, config: Config, rule: str, message: str) -> tuple[None, Diagnostic]:
    return None, Diagnostic(display_path(path, config), 1, 1, rule, message)


def _scan(path: Path, config: Config, explicit: bool) -> Iterator[tuple[Path | None, Diagnostic | None]]:
    if not _is_utf8_name(str(path)):
        yield _problem(path, config, "file-name", "this path is not valid UTF-8; rename it")
        return
    if path.is_symlink() and is_outside_project(path, config):
        yield _problem(
            path, config, "symlink-outside", "this symlink points outside the repository; copy the content in instead"
        )
        return
    if path.is_dir():
        if path.name == LEAF_FILE:
            yield _problem(path, config, "file-name", "'qna.yaml' is a directory; a leaf's qna.yaml must be a file")
            return
        yield from _walk(path, config)
        return
    name = path.name
    if name == LEAF_FILE:
        yield path, None
    elif name.lower() == ATTRIBUTION_FILE and explicit:
        # A changed attribution.txt (as pre-commit passes it) re-validates its leaf.
        sibling = path.parent / LEAF_FILE
        if sibling.is_file():
            yield sibling, None
    elif looks_like_leaf_file(name):
        yield _problem(path, config, "file-name", f"'{name}' is not read as a leaf; rename it to 'qna.yaml'")


def _walk(directory: Path, config: Config) -> Iterator[tuple[Path | None, Diagnostic | None]]:
    # A directory os.walk cannot list would hide its leaves: report it rather than skip it.
    unreadable: list[OSError] = []
    for current, dirnames, filenames in os.walk(directory, onerror=unreadable.append, followlinks=False):
        yield from _unlistable(unreadable, directory, config)
        base = Path(current)
        keep = []
        for name in sorted(dirnames):
            child = base / name
            if name.startswith(".") or name in _SKIP_DIRS:
                continue
            if not _is_utf8_name(name):
                yield _problem(child, config, "file-name", "this directory name is not valid UTF-8; rename it")
                continue
            if child.is_symlink():
                if is_outside_project(child, config):
                    yield from _scan(child, config, explicit=False)
                continue
            if name == LEAF_FILE:
                yield from _scan(child, config, explicit=False)
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not _is_utf8_name(name):
                yield _problem(base / name, config, "file-name", "this file name is not valid UTF-8; rename it")
            elif name == LEAF_FILE or looks_like_leaf_file(name):
                yield from _scan(base / name, config, explicit=False)
    yield from _unlistable(unreadable, directory, config)


def _unlistable(errors: list[OSError], directory: Path, config: Config) -> Iterator[tuple[None, Diagnostic]]:
    while errors:
        error = errors.pop(0)
        where = Path(error.filename) if error.filename else directory
        yield _problem(
            where, config, "unreadable", f"cannot list this directory ({error.strerror}); its leaves were not checked"
        )


def find_branch(path: Path, config: Config) -> str | None:
    """The branch of a leaf file: from its place under the taxonomy root, else the nearest branch name
    in its absolute path (InstructLab's rule), so a single file passed from elsewhere still works."""
    relative = taxonomy_relative(path, config)
    if relative is not None:
        return relative.parts[0] if relative.parts and relative.parts[0] in BRANCHES else None
    for part in reversed(path.absolute().parts[:-1]):
        if part in BRANCHES:
            return part
    return None


def leaf_path(path: Path, config: Config) -> str:
    """The leaf's path relative to the taxonomy root (its identity), or from its branch onwards."""
    relative = taxonomy_relative(path, config)
    if relative is not None:
        return relative.as_posix()
    parts = path.absolute().parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in BRANCHES:
            return PurePosixPath(*parts[index:]).as_posix()
    return path.name
