"""The curation ledger: why every sample was dropped, counted per stage, per reason and per leaf, with
the first few examples of each reason (in processing order, so the report is deterministic), and one
decision record per dropped sample (`dropped.jsonl`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from labtax.curate.samples import Candidate
from labtax.text import excerpt


@dataclass
class LeafCounts:
    read: int = 0
    malformed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    phase1: int = 0
    phase2: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "malformed": self.malformed,
            "dropped": dict(sorted(self.dropped.items())),
            "kept": self.kept,
            "phase1_rows": self.phase1,
            "phase2_rows": self.phase2,
        }


class Ledger:
    def __init__(self, examples_per_reason: int):
        self.examples_per_reason = examples_per_reason
        self.leaves: dict[str, LeafCounts] = {}
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.decisions: list[dict[str, Any]] = []  # one record per dropped sample, in processing order

    def leaf(self, leaf: str) -> LeafCounts:
        return self.leaves.setdefault(leaf, LeafCounts())

    def drop(
        self,
        stage: str,
        reason: str,
        leaf: str,
        line: int,
        *,
        candidate: Candidate | None = None,
        detail: str = "",
        text: str = "",
        show_text: bool = True,
    ) -> None:
        """Count a drop. `show_text` False keeps the sample's text out of the report (PII: the report
        and dropped.jsonl may be published with the data)."""
        self.reasons[(stage, reason)] += 1
        self.leaf(leaf).dropped[f"{stage}/{reason}"] += 1
        self.decisions.append(
            {
                "sample_id": candidate.sample_id if candidate is not None else None,
                "leaf": leaf,
                "line": line,
                "stage": stage,
                "reason": reason,
                "detail": detail,
            }
        )
        examples = self.examples.setdefault((stage, reason), [])
        if len(examples) < self.examples_per_reason:
            example: dict[str, Any] = {"leaf": leaf, "line": line}
            if candidate is not None:
                example["sample_id"] = candidate.sample_id
                if show_text:
                    example["question"] = excerpt(candidate.question)
                    example["answer"] = excerpt(candidate.answer)
            elif text:
                example["text"] = excerpt(text)
            if detail:
                example["detail"] = detail
            examples.append(example)

    def stage_total(self, stage: str) -> int:
        return sum(count for (name, _), count in self.reasons.items() if name == stage)

    def drops_json(self) -> dict[str, Any]:
        stages: dict[str, dict[str, Any]] = {}
        for (stage, reason), count in sorted(self.reasons.items()):
            entry = stages.setdefault(stage, {"dropped": 0, "reasons": {}})
            entry["dropped"] += count
            entry["reasons"][reason] = {"count": count, "examples": self.examples.get((stage, reason), [])}
        return stages
