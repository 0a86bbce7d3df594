"""Release: from a version tag to a model on the Hugging Face Hub.

`manifest.py` owns `release.json` (where a model came from), `card.py` the model card, `hub.py` the
push (idempotent, resumable), and `release.py` the orchestration that `labtax release` calls.
"""
