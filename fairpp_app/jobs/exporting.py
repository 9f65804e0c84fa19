"""Export a run as one wide table: each question with every respondent's answer.

The layout is the official Fair-PP one (so other tools read it) plus what fairpp knows
beyond it: a ``question_id``, the framing, the split, option texts, raw text and option
probabilities. ``importer`` reads it back into the same records.
"""

from __future__ import annotations

import re
from pathlib import Path

from fairpp_app.core import questions as qb
from fairpp_app.core.errors import UsageError
from fairpp_app.core.personas import Persona
from fairpp_app.store.database import Store

FORMATS = ("csv", "parquet", "jsonl", "hf")
INDEX_OF = {"A": 0, "B": 1, "C": 2}


def _safe(name: str) -> str:
    return re.sub(r"\s+", "-", name.strip()) or "model"


def export_frame(store: Store, run_name: str, personas: list[Persona]):
    import pandas as pd

    run = store.get_run(run_name)
    records = store.export_records(run["id"])
    qids = list(dict.fromkeys(records["question_id"]))
    rows = store.question_rows(qids)
    by_slug = {p.slug: p for p in personas}
    source = _safe(run["model"] or "persona")
    table = []
    for qid in qids:
        q = rows[qid]
        scenario = q["kind"] == "scenario"
        parent = rows.get(q["parent_id"]) if scenario else None
        if scenario and parent is None and q["parent_id"]:
            parent = store.question_rows([q["parent_id"]]).get(q["parent_id"])
        tq = parent or q
        table.append({
            "question_id": qid, "kind": q["kind"], "split": q["split"],
            "bank": q.get("bank", "fairpp"),
            "Topic": q["topic"], "Problem Category": q["category"],
            "Specific Problem": q["problem"], "Group Type": q["group_type"], "Group": q["group_name"],
            "Perspective": f"{_topic_number(q['topic'])}.{q['dimension']}",
            "Framing": q["framing"],
            "Option": qb.dimension_poles(q["dimension"])[q["framing"] - 1] if q["dimension"] else "",
            "Question": tq["text"],
            "Option_A": q["option_a"], "Option_B": q["option_b"], "Option_C": q["option_c"],
            "simulation_question": q["text"] if scenario else None,
        })
    frame = pd.DataFrame(table)
    position = {qid: i for i, qid in enumerate(qids)}
    for respondent, group in records.groupby("respondent", sort=False):
        kind = group["respondent_kind"].iloc[0]
        if kind == "persona" and respondent in by_slug:
            stem = f"{source}_role_{by_slug[respondent].number}"
            raw_col = stem
        else:
            stem = respondent
            raw_col = f"{stem}_raw"
        answers = [None] * len(qids)
        raw = [None] * len(qids)
        probs = {x: [None] * len(qids) for x in "ABC"}
        for qid, ans, text, pa, pb, pc in zip(group["question_id"], group["answer"],
                                               group["raw_text"], group["p_a"], group["p_b"],
                                               group["p_c"]):
            i = position[qid]
            answers[i] = INDEX_OF.get(ans) if isinstance(ans, str) else None
            raw[i] = text
            for x, p in zip("ABC", (pa, pb, pc)):
                probs[x][i] = None if p is None or p != p else float(p)
        frame[raw_col] = raw
        frame[f"{stem}_answer"] = pd.array(answers, dtype="Int64")
        if any(p is not None for p in probs["A"]):
            for x in "ABC":
                frame[f"{stem}_prob_{x}"] = pd.array(probs[x], dtype="Float64")
    return frame


def _topic_number(topic: str) -> int:
    try:
        return qb.topic_index(topic)
    except ValueError:
        return 0


def export_run(store: Store, run_name: str, fmt: str, out: Path, personas: list[Persona]) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    frame = export_frame(store, run_name, personas)
    out = Path(out)
    if fmt != "hf":
        out.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target first so an interrupted export never leaves a half file.
    if fmt == "csv":
        tmp = out.with_name(out.name + ".part")
        frame.to_csv(tmp, index=False)
        tmp.replace(out)
    elif fmt == "parquet":
        tmp = out.with_name(out.name + ".part")
        frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    elif fmt == "jsonl":
        tmp = out.with_name(out.name + ".part")
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        tmp.replace(out)
    else:
        import datasets

        if out.exists() and any(out.iterdir()) and not (out / "dataset_info.json").exists():
            raise UsageError(f"{out} exists and is not a dataset folder; choose another --out")
        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(out))
    return len(frame)
