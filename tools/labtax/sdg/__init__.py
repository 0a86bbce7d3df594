"""Synthetic data generation (SDG): the teacher backends, LAB pipelines, the cache and the run.

`plan_generation` (pure) decides what a run would do; `generate` does it. See docs/generation.md.
"""
