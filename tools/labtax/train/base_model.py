"""Resolving a `--base-model` (or `--model`, `--baseline`) argument before any work starts.

A model argument is either a local transformers directory or a Hugging Face Hub id, and the two can
look alike: `out/base` is a valid Hub id *and* a relative path. A typo in a local path used to pass
as a Hub id, so a release ran generation and curation for an hour before the tokenizer failed to
load. `resolve_model` settles which one a name is, up front, and checks that it is there:

- a name that exists on disk is a local directory, and must hold a `config.json` that loads;
- any other name must be a valid Hub id, and its `config.json` must be on the Hub (downloaded into
  the Hugging Face cache), or, in offline mode (`HF_HUB_OFFLINE=1`), already in that cache;
- every failure says which of the two the name was taken for and what was looked at.

`labtax train`, `labtax evaluate` and `labtax release` call it before they write anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError, UsageError

LOCAL = "local"
HUB = "hub"
HUB_CACHE = "hub-cache"
_TRUE = ("1", "ON", "YES", "TRUE")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model argument points: a local directory, a Hub id checked on the Hub, or one found in the cache."""

    name: str  # as the user gave it
    source: str  # LOCAL | HUB | HUB_CACHE
    location: str  # the absolute directory (LOCAL) or the Hub id (HUB, HUB_CACHE)
    revision: str | None  # the Hub commit the cache holds; None for a local directory
    model_type: str  # config.json's model_type, e.g. "llama"

    def describe(self) -> str:
        if self.source == LOCAL:
            return f"local directory {self.location} ({self.model_type})"
        where = "checked on the Hub" if self.source == HUB else "found in the local Hugging Face cache (offline mode)"
        at = f" at revision {self.revision[:12]}" if self.revision else ""
        return f"Hub model {self.location}{at} ({self.model_type}; {where})"

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "location": self.location, "revision": self.revision, "type": self.model_type}


def hub_offline() -> bool:
    """Offline mode as huggingface_hub and transformers define it, read now (not at import time)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or any(
        os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_model(name: str, *, role: str = "--base-model") -> ResolvedModel:
    """Settle whether `name` is a local directory or a Hub id, and check that the model is there.

    Raises UsageError (a mistake in the argument) or LabtaxError (the Hub could not be asked), with a
    message that names `role`, what `name` was taken for, and what to do.
    """
    if not name.strip():
        raise UsageError(f"{role} is empty: pass a model directory or a Hugging Face Hub id (owner/name)")
    path = Path(name).expanduser()
    if path.exists():
        return _resolve_local(name, path, role)
    return _resolve_hub(name, path, role)


def _resolve_local(name: str, path: Path, role: str) -> ResolvedModel:
    directory = path.resolve()
    if not directory.is_dir():
        raise UsageError(f"{role} {name}: taken as a local path, but it is a file; pass the model's directory")
    if not (directory / "config.json").is_file():
        raise UsageError(
            f"{role} {name}: taken as a local directory, but {directory} has no config.json, so it is not a "
            "transformers model directory (`labtax model import` converts a GGUF file into one)"
        )
    return ResolvedModel(name, LOCAL, str(directory), None, _model_type(directory, f"{role} {name}"))


def _resolve_hub(name: str, path: Path, role: str) -> ResolvedModel:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    missing = f"no such local path ({path.absolute()})"
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise UsageError(f"{role} {name}: {missing}, and not a Hub id (owner/name) either") from None
    offline = hub_offline()
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    taken = f"{role} {name}: {missing}; taken as a Hub id"
    try:
        config_file = hf_hub_download(
            name,
            "config.json",
            local_files_only=offline,
            endpoint=endpoint,
            token=os.environ.get("HF_TOKEN") or None,
        )
    except GatedRepoError:
        raise UsageError(
            f"{taken}, it is a gated repository on {endpoint}: accept its terms on the Hub and set HF_TOKEN"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise UsageError(
            f"{taken}, {endpoint} has no such model (or it is private: set HF_TOKEN); "
            "check the spelling of the path or the id"
        ) from None
    except LocalEntryNotFoundError:
        if offline:
            raise UsageError(
                f"{taken}, it is not in the local Hugging Face cache, and offline mode (HF_HUB_OFFLINE=1) keeps "
                "the Hub from being asked; check the spelling, or download it once with network access"
            ) from None
        raise LabtaxError(
            f"{taken}, but {endpoint} cannot be reached to check it; retry, or set HF_HUB_OFFLINE=1 to use "
            "the local cache"
        ) from None
    except EntryNotFoundError:  # after LocalEntryNotFoundError, its subclass: the Hub has no such file
        raise UsageError(f"{taken}, the Hub repository has no config.json: it is not a transformers model") from None
    except (HfHubHTTPError, OSError) as exc:
        raise LabtaxError(f"{taken}, but asking {endpoint} about it failed ({type(exc).__name__}); retry") from None
    snapshot = Path(config_file).parent
    revision = snapshot.name if snapshot.parent.name == "snapshots" else None
    model_type = _model_type(snapshot, f"{role} {name} (Hub id)")
    return ResolvedModel(name, HUB_CACHE if offline else HUB, name, revision, model_type)


def _model_type(directory: Path, label: str) -> str:
    """config.json's model_type, after transformers has parsed the whole configuration."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(directory)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{label}: its config.json does not load ({exc})") from None
    return str(getattr(config, "model_type", "") or "unknown")
