"""One module per CLI verb. Each exposes `command(...)`, typer-annotated, returning an exit code.

Module-level imports stay light (stdlib, typer, labtax.cli_utils): cli.py imports every command
module at start-up, and the pre-commit hook must start fast. Import the work inside the function.
"""
