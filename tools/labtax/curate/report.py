"""The curation ledger: why every sample was dropped, counted per stage, per reason and per leaf, with
the first few examples of each reason (in processing order, so the report is deterministic), and one
decision record per dropped sample (`dropped.jsonl`). Its counts become curation.json's records
(labtax.records.curation)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from labtax.curate.samples import Candidate
from labtax.records.curation import DropDecision, DropExample, LeafCuration, ReasonDrops, StageDrops
from labtax.text import excerpt


@dataclass
class LeafCounts:
    read: int = 0
    malformed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    seeds: int = 0  # training seeds added ([mix] seeds): rows of phase1/phase2 beside the kept samples
    phase1: int = 0
    phase2: int = 0
    flagged: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, status: str, target: int) -> LeafCuration:
        return LeafCuration(
            read=self.read,
            malformed=self.malformed,
            dropped=dict(sorted(self.dropped.items())),
            kept=self.kept,
            phase1_rows=self.phase1,
            phase2_rows=self.phase2,
            kind=kind,
            status=status,
            target=target,
            flagged=dict(sorted(self.flagged.items())),
            seeds=self.seeds,
        )


class Ledger:
    def __init__(self, examples_per_reason: int):
        self.examples_per_reason = examples_per_reason
        self.leaves: dict[str, LeafCounts] = {}
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], list[DropExample]] = {}
        self.decisions: list[DropDecision] = []  # one record per dropped sample, in processing order
        self.flag_counts: Counter[str] = Counter()
        self.flag_examples: dict[str, list[DropExample]] = {}

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
        sample_id = candidate.sample_id if candidate is not None else None
        self.decisions.append(DropDecision(sample_id, leaf, line, stage, reason, detail))
        examples = self.examples.setdefault((stage, reason), [])
        if len(examples) < self.examples_per_reason:
            shown = candidate is not None and show_text
            examples.append(
                DropExample(
                    leaf=leaf,
                    line=line,
                    sample_id=sample_id,
                    question=excerpt(candidate.question) if shown and candidate else None,
                    answer=excerpt(candidate.answer) if shown and candidate else None,
                    text=excerpt(text) if candidate is None and text else None,
                    detail=detail or None,
                )
            )

    def flag(self, flag: str, candidate: Candidate, detail: str, *, show_text: bool = True) -> None:
        """Count a kept sample worth a look (it stays in the data)."""
        self.flag_counts[flag] += 1
        self.leaf(candidate.leaf).flagged[flag] += 1
        examples = self.flag_examples.setdefault(flag, [])
        if len(examples) < self.examples_per_reason:
            examples.append(
                DropExample(
                    leaf=candidate.leaf,
                    line=candidate.line,
                    sample_id=candidate.sample_id,
                    question=excerpt(candidate.question) if show_text else None,
                    answer=excerpt(candidate.answer) if show_text else None,
                    detail=detail or None,
                )
            )

    def flags(self) -> dict[str, ReasonDrops]:
        return {
            flag: ReasonDrops(count, tuple(self.flag_examples.get(flag, [])))
            for flag, count in sorted(self.flag_counts.items())
        }

    def stage_total(self, stage: str) -> int:
        return sum(count for (name, _), count in self.reasons.items() if name == stage)

    def drops(self) -> dict[str, StageDrops]:
        by_stage: dict[str, dict[str, ReasonDrops]] = {}
        for (stage, reason), count in sorted(self.reasons.items()):
            by_stage.setdefault(stage, {})[reason] = ReasonDrops(count, tuple(self.examples.get((stage, reason), [])))
        return {
            stage: StageDrops(sum(r.count for r in reasons.values()), reasons) for stage, reasons in by_stage.items()
        }
