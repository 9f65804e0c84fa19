"""Which question a row of an imported file is, and the questions it defines.

The rules are those of ``official_layout``: an official row is a question of the ``official``
bank keyed by its fields and ``Option`` pole, with the file's wording, options and split,
linked to fairpp's template question for the same fields and pole (``twin_id``). A row of a
fairpp export is the question its ``question_id`` names, or fairpp's template question for
its fields when marked ``bank = fairpp``.
"""

from __future__ import annotations

import hashlib

from fairpp_app.core import questions as qb
from fairpp_app.core.questions import Question
from fairpp_app.jobs import official_layout as layout
from fairpp_app.jobs.official_layout import REQUIRED_COLUMNS
from fairpp_app.jobs.official_layout import text as cell
from fairpp_app.jobs.scenarios import SCENARIO_QUESTION


class Taxonomy:
    """Case-insensitive lookups of the shipped taxonomy's names."""

    def __init__(self) -> None:
        tax = qb.taxonomy()
        self.tax = tax
        self.topics = {t.lower(): t for t in tax["topics"]}
        self.group_types = {g.lower(): g for g in tax["groups"]}

    @staticmethod
    def _pick(name: str, choices) -> str | None:
        return {c.lower(): c for c in choices}.get(name.lower())

    def fields(self, row) -> tuple[tuple[str, ...], bool]:
        """(topic, category, problem, group type, group) as the taxonomy spells them when
        it knows them, and whether it knows all of them."""
        values = {k: cell(row.get(k)) for k in REQUIRED_COLUMNS}
        for k, v in values.items():
            if v is None:
                raise ValueError(f"empty {k}")
        topic = self.topics.get(values["Topic"].lower())
        categories = self.tax["topics"].get(topic, {})
        category = self._pick(values["Problem Category"], categories)
        problem = self._pick(values["Specific Problem"], categories.get(category, []))
        group_type = self.group_types.get(values["Group Type"].lower())
        group = self._pick(values["Group"], self.tax["groups"].get(group_type, []))
        known = (topic, category, problem, group_type, group)
        raw = (values["Topic"], values["Problem Category"], values["Specific Problem"],
               values["Group Type"], values["Group"])
        return tuple(k or r for k, r in zip(known, raw)), None not in known


def _options_from_columns(row) -> list[str] | None:
    a, b = cell(row.get("Option_A")), cell(row.get("Option_B"))
    return [a, b, cell(row.get("Option_C")) or qb.wording()["option_c"]] if a and b else None


def official_question(row, tax: Taxonomy, split: str) -> Question:
    """The official-bank question of a template row (see ``official_layout``)."""
    (topic, category, problem, group_type, group), in_taxonomy = tax.fields(row)
    dimension = layout.parse_dimension(row.get("Perspective"))
    text = cell(row.get("Question"))
    pole = cell(row.get("Option"))
    poles = qb.dimension_poles(dimension)
    framing, _ = layout.infer_framing(pole, poles, cell(row.get("Framing")), text)
    # A pole the dimension does not have (a user's own templates) still tells rows apart.
    known_pole = pole is None or pole.lower() in (p.lower() for p in poles)
    option_key = str(framing) if known_pole else f"option:{pole.lower()}"
    key = [v if in_taxonomy else v.lower() for v in (topic, category, problem, group_type, group)]
    qid = qb.official_id(*key, str(dimension), option_key)
    parsed = layout.split_options(text)
    if parsed:
        stem, options = parsed
        options = options + [qb.wording()["option_c"]] * (3 - len(options))
        if not stem:
            raise ValueError("Question holds options but no question before them")
    else:
        stem = text
        options = (_options_from_columns(row) if cell(row.get("simulation_question")) is None
                   else None)
        if options is None:  # a file without option texts: fairpp's for the same pole
            verb_topic = topic if topic in tax.tax["topics"] else next(iter(tax.tax["topics"]))
            options = list(qb.render(verb_topic, problem, group, dimension, framing)[1:])
    twin = (qb.template_id(topic, category, problem, group_type, group, dimension, framing)
            if in_taxonomy else None)
    return Question(id=qid, kind="template" if in_taxonomy else "imported", topic=topic,
                    category=category, problem=problem, group_type=group_type, group_name=group,
                    dimension=dimension, framing=framing, text=stem, option_a=options[0],
                    option_b=options[1], option_c=options[2], split=split, bank="official",
                    twin_id=twin)


def scenario_question(row, parent: Question) -> Question:
    """The scenario question of a ``Fair-PP-simulation`` row, linked to its template row."""
    text = cell(row.get("simulation_question")) or ""
    options = [cell(row.get(f"Option_{x}")) for x in "ABC"]
    if not (options[0] and options[1]):
        parsed = layout.split_options(text)
        if parsed is None:
            raise ValueError("scenario row without Option_A and Option_B")
        options = parsed[1] + [None] * (3 - len(parsed[1]))
    stem = layout.scenario_stem(text, options) or SCENARIO_QUESTION.format(
        group=parent.group_name, problem=parent.problem)
    return Question(id=qb.scenario_id(parent.id), kind="scenario", topic=parent.topic,
                    category=parent.category, problem=parent.problem,
                    group_type=parent.group_type, group_name=parent.group_name,
                    dimension=parent.dimension, framing=parent.framing, text=stem,
                    option_a=options[0], option_b=options[1],
                    option_c=options[2] or qb.wording()["option_c"], split="scenario",
                    parent_id=parent.id, bank=parent.bank)


def fairpp_question(row, tax: Taxonomy) -> Question:
    """A row marked ``bank = fairpp`` (a fairpp export): fairpp's own template question, or an
    ``imported`` one when the taxonomy does not know its fields."""
    (topic, category, problem, group_type, group), in_taxonomy = tax.fields(row)
    dimension = layout.parse_dimension(row.get("Perspective"))
    text = cell(row.get("Question"))
    framing, _ = layout.infer_framing(cell(row.get("Option")), qb.dimension_poles(dimension),
                                      cell(row.get("Framing")), text)
    split = layout.normalise_split(cell(row.get("split"))) or "train"
    if in_taxonomy:
        tid = qb.template_id(topic, category, problem, group_type, group, dimension, framing)
        stem, a, b, c = qb.render(topic, problem, group, dimension, framing)
        return Question(id=tid, kind="template", topic=topic, category=category, problem=problem,
                        group_type=group_type, group_name=group, dimension=dimension,
                        framing=framing, text=stem, option_a=a, option_b=b, option_c=c,
                        split=split)
    options = _options_from_columns(row) or list(qb.render(
        next(iter(tax.tax["topics"])), problem, group, dimension, framing)[1:])
    iid = "i" + hashlib.sha256("\x1f".join(
        [topic, category, problem, group_type, group, str(dimension), str(framing), text]
    ).encode()).hexdigest()[:15]
    return Question(id=iid, kind="imported", topic=topic, category=category, problem=problem,
                    group_type=group_type, group_name=group, dimension=dimension,
                    framing=framing, text=text, option_a=options[0], option_b=options[1],
                    option_c=options[2], split=split)


def row_questions(row, tax: Taxonomy, known: set[str], table_split: str | None
                   ) -> tuple[str, list[Question]]:
    """(the row's question id, the questions it defines: its own, then a scenario's parent)."""
    explicit = cell(row.get("question_id"))
    if explicit and explicit in known:
        return explicit, []
    bank = (cell(row.get("bank")) or "official").lower()
    if bank not in qb.BANKS:
        raise ValueError(f"bank {bank!r} is not one of {', '.join(qb.BANKS)}")
    scenario = cell(row.get("simulation_question")) is not None
    given = cell(row.get("split"))
    split = layout.normalise_split(given)
    if given is not None and split is None:
        raise ValueError(f"split {given!r} is not train, test or scenario")
    if bank == "fairpp":  # fairpp's own questions are defined by fairpp, never by a file
        base = fairpp_question(row, tax)
        if scenario:
            question = scenario_question(row, base)
            return question.id, [q for q in (question, base) if q.id not in known]
        return base.id, [] if base.id in known else [base]
    if scenario:  # its template row: the test split's in the release, unless told
        own = split if split in layout.TEMPLATE_SPLITS else table_split
        split = own if own in layout.TEMPLATE_SPLITS else "test"
    else:
        split = split or table_split or "train"
        if split not in layout.TEMPLATE_SPLITS:
            raise ValueError(f"a template row (no simulation_question) cannot be in split "
                             f"'{split}'")
    base = official_question(row, tax, split)
    if not scenario:
        return base.id, [base]
    question = scenario_question(row, base)
    return question.id, [question, base]
