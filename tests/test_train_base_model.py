"""Resolving a model argument up front: a local directory, a Hub id asked of a stand-in Hub on 127.0.0.1, or
a Hub id found in the local cache in offline mode; every failure says what the name was taken for."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_server import running_hub
from labtax.errors import UsageError
from labtax.train.base_model import HUB, HUB_CACHE, LOCAL, resolve_model

TOKEN = "hf_BaseModelTokenNeverPrinted7"


def test_a_local_directory_must_hold_a_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    resolved = resolve_model(str(tiny_model_dir))
    assert (resolved.source, resolved.location, resolved.model_type) == (LOCAL, str(tiny_model_dir), "llama")
    assert resolved.describe().startswith("local directory ")

    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(UsageError, match="taken as a local path, but it is a file"):
        resolve_model(str(tmp_path / "weights.bin"))
    with pytest.raises(UsageError, match=r"taken as a local directory, but .* has no config\.json"):
        resolve_model(str(tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"its config\.json does not load"):
        resolve_model(str(broken))
    with pytest.raises(UsageError, match=r"no such local path .* and not a Hub id \(owner/name\) either"):
        resolve_model("out/runs/typo", role="--baseline")
    with pytest.raises(UsageError, match="--base-model is empty"):
        resolve_model(" ")


def test_a_hub_id_is_checked_on_the_hub_then_found_in_the_cache_offline(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    # conftest keeps every test offline and its caches private; this test asks its own Hub on 127.0.0.1
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.chdir(tmp_path)  # "org/tiny" and "org/nope" are no local paths here
    with running_hub(TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo("org/tiny")
        api.upload_file(path_or_fileobj=tiny_model_dir / "config.json", path_in_repo="config.json", repo_id="org/tiny")

        online = resolve_model("org/tiny")
        assert (online.source, online.location, online.model_type) == (HUB, "org/tiny", "llama")
        assert online.revision == hub.repo("org/tiny").branches["main"]
        assert "checked on the Hub" in online.describe()
        with pytest.raises(UsageError, match=r"no such local path .*; taken as a Hub id, .* has no such model"):
            resolve_model("org/nope")
        api.create_repo("org/dataset-like")
        api.upload_file(path_or_fileobj=b"# notes\n", path_in_repo="README.md", repo_id="org/dataset-like")
        with pytest.raises(UsageError, match=r"the Hub repository has no config\.json"):
            resolve_model("org/dataset-like")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub is gone; the cache still holds what was checked
    cached = resolve_model("org/tiny")
    assert (cached.source, cached.revision) == (HUB_CACHE, online.revision)
    assert "found in the local Hugging Face cache (offline mode)" in cached.describe()
    with pytest.raises(UsageError, match="taken as a Hub id, it is not in the local Hugging Face cache"):
        resolve_model("org/nope")
