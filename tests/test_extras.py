"""The optional extras: pyproject.toml and `labtax.extras` name the same packages, the core install carries
nothing an extra is for, and the dev tools are pinned exactly. (The core install itself is exercised in a
real environment by tests/test_precommit.py: the hook by URL, and commands that need an extra.)"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest

from conftest import REPO_ROOT, needs_extra
from labtax.extras import EXTRA_MODULES, INCLUDES, MissingExtraError, missing_extra_error, modules_of

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def distribution(requirement: str) -> str:
    match = _NAME.match(requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def import_names(dist: str) -> set[str]:
    """The top-level modules an installed distribution provides (from its metadata, nothing imported)."""
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if dist in {d.lower().replace("_", "-") for d in dists} and not module.startswith("_")
    }


@needs_extra("all")
def test_every_extra_of_pyproject_is_known_to_labtax_extras() -> None:
    declared = set(PROJECT["optional-dependencies"]) - {"dev"}
    assert declared == set(EXTRA_MODULES) | set(INCLUDES)
    for extra, requirements in PROJECT["optional-dependencies"].items():
        if extra == "dev":
            continue
        own = [r for r in requirements if not r.startswith("labtax[")]
        listed = set(EXTRA_MODULES.get(extra, ()))
        provided = [import_names(distribution(r)) for r in own]
        # Every module listed comes from a package of the extra, and every package has a module listed.
        assert listed <= set().union(*provided), extra
        assert all(names & listed for names in provided), extra
        included = [r for r in requirements if r.startswith("labtax[")]
        names = {n for r in included for n in r[len("labtax[") : -1].split(",")}
        assert names == set(INCLUDES.get(extra, ())), extra


def test_the_core_install_carries_nothing_an_extra_is_for() -> None:
    core = {distribution(r) for r in PROJECT["dependencies"]}
    assert core == {"gitpython", "pyyaml", "jsonschema", "fastjsonschema", "pre-commit", "typer", "pydantic"}
    extra_modules = set(modules_of("all"))
    for dist in core:
        assert not import_names(dist) & extra_modules, dist


def test_the_linters_and_type_checkers_are_pinned_exactly() -> None:
    pinned = {distribution(r): r for r in PROJECT["optional-dependencies"]["dev"] if "==" in r}
    for tool in ("ruff", "mypy", "zizmor", "yamllint", "types-pyyaml", "instructlab-schema"):
        assert tool in pinned, f"{tool} must be pinned with == in the dev extra"
        try:
            installed = metadata.version(tool)
        except metadata.PackageNotFoundError:  # the core install's runs have no dev tools
            continue
        assert installed == pinned[tool].split("==")[1].split(";")[0].strip(), tool


def test_a_missing_module_names_the_smallest_extra_that_brings_it() -> None:
    def extra_for(module: str) -> str | None:
        error = missing_extra_error(ModuleNotFoundError(name=module))
        assert error is None or isinstance(error, MissingExtraError)
        return error.extra if error is not None else None

    assert extra_for("torch.nn") == "train" and extra_for("tqdm") == "generate" and extra_for("numpy") == "curate"
    assert "pip install 'labtax[release]'" in str(missing_extra_error(ModuleNotFoundError(name="huggingface_hub")))
    assert missing_extra_error(ModuleNotFoundError(name="labtax.nonexistent")) is None
    with pytest.raises(ValueError):
        modules_of("gpu")
