"""The typed records that cross files between stages: a low floor that every stage imports and none
re-declares.

One module per stage's files, each record a frozen dataclass with one writer and one reader, used by the
producing and the consuming stage alike, and a format version checked on read (a newer file is refused
with a message that says to upgrade labtax):

    sample.py      Sample (+ SampleMetadata, TeacherExchange, Message)        samples.jsonl, phase files
    generation.py  GenerationIndex, LeafSummary, RejectedCandidate, RunSummary  GEN/
    curation.py    CurationReport, DropDecision, PreferencePair               DATA/
    evaluation.py  EvalReport (+ Scores, LeafEvaluation, GateVerdict)         eval.json
    release.py     ReleaseManifest (+ ReleaseEvaluation)                      release.json
    base.py        RecordFormat, RecordError, NewerFormatError, decode, to_json

Standard library only at import time (pydantic is imported by a reader when it reads a file), so the
lean core install and the pre-commit hook path can import any of it. The table of files, formats,
writers and readers is in docs/architecture.md ("Stage contracts").
"""
