"""The Fair-PP question bank (template part) and its train/test split.

The bank is a pure function of the shipped taxonomy and wording: every question's id is
a hash of the fields that define it, so building twice yields the same ids and a store
can upsert without duplicating. The split is stratified by (topic, dimension) cells with
largest-remainder allocation, then ranked inside each cell by a seeded hash, so it is
deterministic, hits the published test size exactly and puts every topic and dimension in
both halves.

Every question belongs to one bank: ``fairpp`` (this module's own wording, the default) or
``official`` (the authors' released wording, imported as it stands; see
``jobs.official_layout``). A split is always a split of one bank, so the two wordings of one
template never count twice; an official question names its fairpp counterpart in
``twin_id`` so the two can be compared.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources

TEST_SIZE = 5669
SPLIT_SEED = "fairpp-split-v1"
SPLITS = ("train", "test", "scenario")
BANKS = ("fairpp", "official")
DEFAULT_BANK = "fairpp"
LETTERS = ("A", "B", "C")  # every question's option letters, in order; defined only here


@dataclass(frozen=True)
class Question:
    id: str
    kind: str  # "template" or "scenario"
    topic: str
    category: str
    problem: str
    group_type: str
    group_name: str
    dimension: int
    framing: int
    text: str
    option_a: str
    option_b: str
    option_c: str
    split: str = "train"
    parent_id: str | None = None
    bank: str = DEFAULT_BANK
    twin_id: str | None = None  # the fairpp template question an official one words differently

    def options(self) -> tuple[str, str, str]:
        return (self.option_a, self.option_b, self.option_c)

    def as_row(self) -> dict:
        # Every field is a plain value: a shallow dict, not dataclasses.asdict's deep copy
        # (which took most of an import's time at 34,089 questions).
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(Question))


@lru_cache(maxsize=1)
def taxonomy() -> dict:
    text = resources.files("fairpp_app.data").joinpath("taxonomy.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def wording() -> dict:
    text = resources.files("fairpp_app.data").joinpath("templates.json").read_text("utf-8")
    return json.loads(text)


def topic_index(topic: str) -> int:
    """1-based position of a topic in the taxonomy (used in the released `Perspective`)."""
    return list(taxonomy()["topics"]).index(topic) + 1


def dimension_poles(dimension: int) -> tuple[str, str]:
    entry = taxonomy()["dimensions"][dimension - 1]
    return entry["A"], entry["B"]


def template_id(topic: str, category: str, problem: str, group_type: str, group: str,
                dimension: int, framing: int) -> str:
    key = "\x1f".join(["template", topic, category, problem, group_type, group,
                       str(dimension), str(framing)])
    return "t" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:15]


def official_id(*key: str) -> str:
    """Id of an official question: a hash of everything that identifies its row in the
    released layout (see ``jobs.official_layout.row_key``)."""
    blob = "\x1f".join(["official", *key])
    return "o" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:15]


def scenario_id(parent_id: str) -> str:
    return "s" + hashlib.sha256(f"scenario\x1f{parent_id}".encode()).hexdigest()[:15]


def render(topic: str, problem: str, group: str, dimension: int, framing: int) -> tuple[str, str, str, str]:
    w = wording()
    verb = w["topic_verbs"][topic]
    fill = {"group": group, "problem": problem, "verb": verb}
    text = w["framings"][str(framing)].format(**fill)
    option_a, option_b = (o.format(**fill) for o in w["options"][str(dimension)][str(framing)])
    return text, option_a, option_b, w["option_c"]


def iter_template_questions() -> Iterator[Question]:
    tax = taxonomy()
    n_dims = len(tax["dimensions"])
    for topic, categories in tax["topics"].items():
        for category, problems in categories.items():
            for problem in problems:
                for group_type, groups in tax["groups"].items():
                    for group in groups:
                        for dimension in range(1, n_dims + 1):
                            for framing in (1, 2):
                                text, a, b, c = render(topic, problem, group, dimension, framing)
                                yield Question(
                                    id=template_id(topic, category, problem, group_type, group,
                                                   dimension, framing),
                                    kind="template", topic=topic, category=category,
                                    problem=problem, group_type=group_type, group_name=group,
                                    dimension=dimension, framing=framing, text=text,
                                    option_a=a, option_b=b, option_c=c,
                                )


def _rank(qid: str, seed: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{qid}".encode()).hexdigest()


def assign_splits(questions: list[Question], test_size: int = TEST_SIZE,
                  seed: str = SPLIT_SEED) -> list[Question]:
    """Return the questions with ``split`` set to train or test (stratified, seeded)."""
    if not 0 < test_size < len(questions):
        raise ValueError("test_size must be between 1 and the number of questions minus 1")
    cells: dict[tuple[str, int], list[Question]] = defaultdict(list)
    for q in questions:
        cells[(q.topic, q.dimension)].append(q)
    total = len(questions)
    quotas = {}
    remainders = []
    for key, members in cells.items():
        exact = test_size * len(members) / total
        quotas[key] = int(exact)
        remainders.append((exact - int(exact), key))
    shortfall = test_size - sum(quotas.values())
    for _, key in sorted(remainders, key=lambda r: (-r[0], r[1]))[:shortfall]:
        quotas[key] += 1
    test_ids: set[str] = set()
    for key, members in cells.items():
        ranked = sorted(members, key=lambda q: _rank(q.id, seed))
        # Keep at least one question of every cell on each side.
        n = min(max(quotas[key], 1), len(members) - 1)
        test_ids.update(q.id for q in ranked[:n])
    out = []
    for q in questions:
        split = "test" if q.id in test_ids else "train"
        out.append(Question(**{**q.as_row(), "split": split}))
    return out


def build_bank() -> list[Question]:
    """All 28,420 template questions with their splits."""
    return assign_splits(list(iter_template_questions()))
