"""What ``database`` and the mixin modules of its ``Store`` share: the clock rows are stamped
with, and the SQL that finds a question's twins. Kept apart so that neither imports the other
while it loads; other code takes these names from ``database``.
"""

from __future__ import annotations

import time

#: Two questions are one question in its two framings when these fields agree (the bank too:
#: the official wording of a question is its twin in the other bank, not another framing).
TWIN_FIELDS = ("bank", "kind", "topic", "category", "problem", "group_type", "group_name", "dimension")


def twin_sql(t: str, q: str) -> tuple[str, str]:
    """``(table, condition)`` that make ``questions`` alias ``t`` the same question as alias
    ``q`` in any framing (the caller adds which), through the index made for it (schema 6),
    which SQLite would not always pick by itself without statistics."""
    return (f"questions {t} INDEXED BY idx_questions_twin",
            " AND ".join(f"{t}.{c} = {q}.{c}" for c in TWIN_FIELDS))


def _now() -> float:
    return time.time()
