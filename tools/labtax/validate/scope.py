"""Which problems block a change: those in what the change touches. The rest are pre-existing notices.

An InstructLab taxonomy adopting labtax has old problems in leaves nobody is editing. A contributor's
change must be judged on what it changes, or nobody can use labtax on new work until the whole tree is
clean. The rule (docs/rules.md, "Changed-only enforcement"; docs/adopting.md):

- A problem **blocks** when it is in a file the change touches (added or edited), or anywhere in a leaf
  the change adds. A leaf's `qna.yaml` counts as touched when the documents it pins in this repository
  change (the pin lives there).
- Any other problem is **pre-existing**: it is listed once, as a notice, and never fails the command.
  That includes an untouched sibling of a touched file, such as an old `attribution.txt` beside an edited
  `qna.yaml`: the contributor gets through, with a note saying so; the leaf's generation still waits for
  the problem to be fixed (generation and release use only leaves without errors).

The touched files come from git: `ChangeScope.since(config, base)` compares the working tree with the
merge-base of HEAD and `base` (as `labtax diff` does); `ChangeScope.of_files(config, files)` takes the files
pre-commit passes, with the leaves new relative to `$PRE_COMMIT_FROM_REF` (set by `pre-commit run
--from-ref`), else HEAD.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from labtax.config import Config
from labtax.errors import Diagnostic, Severity
from labtax.git import GitError, git_toplevel, run_git, zsplit
from labtax.taxonomy.discover import display_path
from labtax.taxonomy.leaf import ATTRIBUTION_FILE, LEAF_FILE

if TYPE_CHECKING:
    from labtax.validate import ValidationResult

PRE_EXISTING = "pre-existing, not blocking this change"


@dataclass(frozen=True)
class ChangeScope:
    """What a change touches, as project-relative POSIX paths (the form `Diagnostic.file` has)."""

    touched: frozenset[str]  # files added or edited
    new_leaf_dirs: frozenset[str]  # directories of leaves the change adds (their qna.yaml is new)
    description: str  # how the change was determined, for messages

    @staticmethod
    def since(config: Config, base: str | None) -> ChangeScope:
        """The leaves changed since the merge-base of HEAD and `base` (labtax.gitdiff), file by file."""
        from labtax.gitdiff import ChangeStatus, changed_leaves

        diff = changed_leaves(config, base)
        touched: set[str] = set()
        new: set[str] = set()
        for change in diff.changes:
            if change.status is ChangeStatus.DELETED or change.is_pure_rename:
                continue
            qna = display_path(config.taxonomy_root / change.path, config)
            leaf_dir = posixpath.dirname(qna)
            old, leaf = change.old_leaf, change.leaf
            if change.status is ChangeStatus.ADDED or old is None:
                new.add(leaf_dir)
                continue
            attribution_changed = leaf is None or old.attribution != leaf.attribution
            if attribution_changed:
                touched.add(posixpath.join(leaf_dir, ATTRIBUTION_FILE))
            # The hash changed: the content, the pinned documents, or the attribution alone.
            if leaf is None or not attribution_changed or old.content != leaf.content or old.document != leaf.document:
                touched.add(qna)
        against = (
            "every leaf is new"
            if diff.everything_new
            else f"compared with {diff.base_ref} at merge-base {(diff.base_commit or '')[:12]}"
        )
        return ChangeScope(frozenset(touched), frozenset(new), against)

    @staticmethod
    def of_files(config: Config, files: Iterable[Path]) -> tuple[ChangeScope, list[Path]]:
        """The scope of the files a commit touches (pre-commit passes them), and the leaf files to validate:
        the leaves of those files, including the leaves whose in-repository documents they are."""
        paths = [path for path in files]
        touched = {display_path(path, config) for path in paths}
        leaf_files: dict[str, Path] = {}
        others: list[Path] = []
        for path in paths:
            if path.name == LEAF_FILE:
                leaf_files[display_path(path, config)] = path
            elif path.name.lower() == ATTRIBUTION_FILE and (path.parent / LEAF_FILE).is_file():
                leaf_files[display_path(path.parent / LEAF_FILE, config)] = path.parent / LEAF_FILE
            else:
                others.append(path)
        toplevel = git_toplevel(config.project_root)
        if toplevel is not None and others:
            for qna in _leaves_using(config, toplevel, others):
                shown = display_path(qna, config)
                leaf_files.setdefault(shown, qna)
                touched.add(shown)  # the pin of documents that changed is in the qna.yaml
        base = os.environ.get("PRE_COMMIT_FROM_REF") or "HEAD"
        new = _new_leaf_dirs(config, toplevel, base, list(leaf_files)) if toplevel is not None else set(leaf_files)
        scope = ChangeScope(frozenset(touched), frozenset(posixpath.dirname(p) for p in new), f"the files of {base}..")
        return scope, [path for path in paths if path.name != LEAF_FILE] + list(leaf_files.values())

    def blocks(self, diagnostic: Diagnostic) -> bool:
        if diagnostic.file in self.touched or diagnostic.file == "pyproject.toml":
            return True
        directory = posixpath.dirname(diagnostic.file)
        return directory in self.new_leaf_dirs

    def split(self, diagnostics: Iterable[Diagnostic]) -> tuple[list[Diagnostic], list[Diagnostic]]:
        """(blocking diagnostics, pre-existing ones re-levelled as notices)."""
        blocking, pre_existing = [], []
        touched_dirs = {posixpath.dirname(path) for path in self.touched}
        for diagnostic in diagnostics:
            if self.blocks(diagnostic):
                blocking.append(diagnostic)
                continue
            note = f"{PRE_EXISTING} ({diagnostic.severity})"
            if diagnostic.severity is Severity.ERROR and posixpath.dirname(diagnostic.file) in touched_dirs:
                note += "; this file is unchanged, so the change gets through, but generation skips the leaf "
                note += "until it is fixed"
            pre_existing.append(replace(diagnostic, severity=Severity.NOTICE, message=f"{diagnostic.message} [{note}]"))
        return blocking, pre_existing


def _new_leaf_dirs(config: Config, toplevel: Path, base: str, leaf_files: list[str]) -> set[str]:
    """The leaf files (project-relative) that do not exist at `base` (all of them when it does not exist)."""
    if not leaf_files:
        return set()
    try:
        prefix = config.project_root.resolve().relative_to(toplevel.resolve()).as_posix()
    except ValueError:
        return set(leaf_files)
    prefix = "" if prefix == "." else prefix
    top_paths = {posixpath.join(prefix, path) if prefix else path: path for path in leaf_files}
    try:
        out = run_git(
            ["--literal-pathspecs", "ls-tree", "-r", "-z", "--name-only", "--full-tree", base, "--", *top_paths],
            toplevel,
        )
    except GitError:  # no such base (the first commit): every leaf is new
        return set(leaf_files)
    existing = set(zsplit(out))
    return {path for top, path in top_paths.items() if top not in existing}


def _leaves_using(config: Config, toplevel: Path, files: list[Path]) -> list[Path]:
    """The qna.yaml files whose in-repository documents include one of `files` (one `git grep`)."""
    from labtax.gitdiff import _leaves_using_documents, _relative_prefix

    try:
        prefix = _relative_prefix(config.taxonomy_root, toplevel, "taxonomy root")
        project_prefix = _relative_prefix(config.project_root, toplevel, "project root")
    except Exception:  # outside the repository: nothing to follow
        return []
    changed = []
    for path in files:
        try:
            changed.append(path.absolute().relative_to(toplevel.resolve()).as_posix())
        except ValueError:
            try:
                changed.append(path.resolve().relative_to(toplevel.resolve()).as_posix())
            except ValueError:
                continue
    return [toplevel / path for path in sorted(_leaves_using_documents(toplevel, prefix, project_prefix, changed))]


def recheck_touched_documents(
    config: Config, result: ValidationResult, scope: ChangeScope, teacher_context: int | None
) -> ValidationResult:
    """`result` with the remote documents of the leaves the change touches fetched and checked (theirs only:
    a pull request is not held up by, nor waits for, the documents of leaves it does not touch)."""
    from labtax.validate import validate_paths

    directories = {posixpath.dirname(path) for path in scope.touched} | set(scope.new_leaf_dirs)
    leaf_files = [config.project_root / directory / LEAF_FILE for directory in sorted(directories)]
    leaf_files = [path for path in leaf_files if path.is_file()]
    if not leaf_files:
        return result
    rechecked = validate_paths(config, leaf_files, check_documents=True, teacher_context=teacher_context)
    fresh = [d for d in rechecked.diagnostics if posixpath.dirname(d.file) in directories]
    kept = [d for d in result.diagnostics if posixpath.dirname(d.file) not in directories]
    result.diagnostics = sorted([*kept, *fresh], key=lambda d: (d.file, d.line, d.column, d.rule))
    rechecked_paths = {leaf.path for leaf in rechecked.leaves}
    result.documents_not_checked = [p for p in result.documents_not_checked if p not in rechecked_paths]
    return result
