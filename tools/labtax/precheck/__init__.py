"""The precheck: what the current model answers to the questions a pull request's new seeds ask.

questions.py  which questions: every Q&A pair of the added and edited seeds (labtax.seeddiff)
records.py    the one record (PrecheckResult), its JSON writer and its strict reader
ask.py        asking the model (served or local), ROUGE-L, the optional judge, the "already known" flag
rouge.py      ROUGE-L F1
markdown.py   the section of the pull-request comment

See docs/report.md ("Precheck") and docs/pr-workflow.md.
"""

from __future__ import annotations
