"""Curation: generated samples → quality filters → decontamination → dedup → diversity selection →
influence (optional) → the two phase datasets and curation.json. `run_curation` is the entry point."""

from __future__ import annotations

from labtax.curate.run import CurationResult, run_curation
from labtax.curate.settings import (
    CurationConfig,
    DedupSettings,
    FilterSettings,
    InfluenceSettings,
    KnowledgeSettings,
    MixSettings,
    SelectSettings,
    load_settings_file,
)

__all__ = [
    "CurationConfig",
    "CurationResult",
    "DedupSettings",
    "FilterSettings",
    "InfluenceSettings",
    "KnowledgeSettings",
    "MixSettings",
    "SelectSettings",
    "load_settings_file",
    "run_curation",
]
