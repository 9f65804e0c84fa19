"""What a row of the official Fair-PP release means: its key, its wording, its split.

The release is read as it stands, never re-worded: a row becomes a question of the
``official`` bank whose id is a hash of everything that tells the row apart in that layout:
topic, problem category, specific problem, group type, group, perspective and the ``Option``
pole. The pole says which of the dimension's two template questions a row is (the first pole
for question 1, the second for question 2), so two rows of one problem, group and perspective
never merge, whatever their wording. Only a file without ``Option`` falls back on a
``Framing`` column, then on the wording hint (question 2 opens with an assumption).

The released ``Question`` carries its options in its text ("...?\\nA. ...\\nB. ...\\nC. N/A")
and ``simulation_question`` also ends with the authors' answer instruction. fairpp's prompt
adds options and an instruction of its own, so both are taken apart here: the stem becomes
the question's text, the options its A/B/C texts, and the instruction is dropped.

A row's split comes from the file: a ``split`` column, else the split the caller names (a
``--split`` flag or the Hugging Face split of a dataset folder), else a ``train`` or
``test`` word in the file name, else ``train``. Scenario rows are the ``scenario`` split.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from fairpp_app.core import questions as qb
from fairpp_app.core.errors import ImportFileError

REQUIRED_COLUMNS = ("Topic", "Problem Category", "Specific Problem", "Group Type", "Group",
                    "Perspective", "Question")
FRAMING_2_HINTS = re.compile(r"assum|suppose|receives? more|end up with more|explanation", re.I)
TEMPLATE_SPLITS = ("train", "test")
# The split names a file, a folder or a Hugging Face dataset may use for each of ours.
SPLIT_NAMES = {"train": "train", "test": "test", "scenario": "scenario",
               "simulation": "scenario"}
_OPTION_LINE = re.compile(r"^[ \t]*([ABC])[.)][ \t]?", re.M)
_SPLIT_WORD = re.compile(r"(?:^|[^a-z])(train|test)(?:[^a-z]|$)")
_INSTRUCTION = re.compile(r"\b(answer|reply|respond|choose|select|pick)\b.*"
                          r"\b(letter|option|directly|only|explanation)\b", re.I | re.S)


@dataclass(frozen=True)
class Table:
    """One table to import: its rows and the split its source names (None when it names none)."""

    frame: object  # a pandas DataFrame
    split: str | None
    name: str


def split_options(text: str) -> tuple[str, list[str]] | None:
    """``"stem\\nA. a\\nB. b\\nC. c"`` -> ``(stem, [a, b, c])``; None when the text holds no
    A and B option lines. Lines after the C option are an instruction and are dropped."""
    marks = [(m.group(1), m.start(), m.end()) for m in _OPTION_LINE.finditer(text)]
    letters = [m[0] for m in marks]
    if "A" not in letters or "B" not in letters[letters.index("A"):]:
        return None
    start = letters.index("A")
    marks = marks[start:start + 3]
    if [m[0] for m in marks] not in (["A", "B"], ["A", "B", "C"]):
        return None
    stem = text[:marks[0][1]].strip()
    options = []
    for i, (_, _, end) in enumerate(marks):
        stop = marks[i + 1][1] if i + 1 < len(marks) else len(text)
        body = text[end:stop]
        if i == len(marks) - 1:
            body = body.split("\n", 1)[0]  # the last option is one line; the rest instructs
        options.append(" ".join(body.split()))
    return stem, options


def split_instruction(text: str) -> tuple[str, str]:
    """A trailing ``"Which ...? Please answer ..."`` -> (the question, the instruction)."""
    text = text.strip()
    if "?" in text:
        cut = text.rindex("?") + 1
        return text[:cut].strip(), text[cut:].strip()
    if _INSTRUCTION.search(text):
        return "", text
    return text, ""


def scenario_stem(text: str, options: list[str | None]) -> str:
    """The question of a ``simulation_question``, without its options and its instruction
    (empty when it asks nothing but that)."""
    a, b, c = (o or "" for o in options)
    block = f"A. {a}\nB. {b}\nC. {c}" if c else f"A. {a}\nB. {b}"
    if a and b and block in text:
        before, after = text.split(block, 1)
    else:
        parsed = _OPTION_LINE.search(text)
        before = text[:parsed.start()] if parsed else text
        last_c = list(re.finditer(r"^[ \t]*C[.)].*$", text, re.M))
        after = text[last_c[-1].end():] if parsed and last_c else ""
    question, _ = split_instruction(after)
    return " ".join(f"{before.strip()} {question}".split())


def infer_framing(pole: str | None, poles: tuple[str, str] | None, framing_cell: str | None,
                  question: str) -> tuple[int, bool]:
    """(framing 1 or 2, whether the file said so). ``Option`` names the pole; a ``Framing``
    column is next; only then the wording hint."""
    if pole and poles:
        lowered = [p.lower() for p in poles]
        if pole.lower() in lowered:
            return lowered.index(pole.lower()) + 1, True
    if framing_cell in ("1", "2", "1.0", "2.0"):
        return int(float(framing_cell)), True
    return (2 if FRAMING_2_HINTS.search(question or "") else 1), False


def split_from_name(name: str) -> str | None:
    found = _SPLIT_WORD.findall(name.lower())
    return found[-1] if found else None


def normalise_split(value: str | None) -> str | None:
    return None if value is None else SPLIT_NAMES.get(value.strip().lower())


# ---- cells ---------------------------------------------------------------------------

def blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    # Nullable parquet columns (Int64, Float64) hold pd.NA, which is neither None nor a float.
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def text(value) -> str | None:
    return None if blank(value) else str(value).strip()


def parse_dimension(value) -> int:
    """``Perspective`` is 'topic.dimension' (e.g. '3.4'), sometimes a float; the dimension is
    the part after the dot."""
    if blank(value):
        raise ValueError("empty Perspective")
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValueError(f"Perspective {text!r} is not of the form topic.dimension")
    dim = int(text.split(".")[1]) if "." in text else int(text)
    if not 1 <= dim <= len(qb.taxonomy()["dimensions"]):
        raise ValueError(f"Perspective {text!r} names dimension {dim}, which does not exist")
    return dim


_LETTER = {"0": "A", "1": "B", "2": "C", "0.0": "A", "1.0": "B", "2.0": "C",
           "A": "A", "B": "B", "C": "C"}


def parse_answer(value) -> str | None:
    """0/1/2 (int, float or text) or A/B/C -> letter; blank -> None (unparsed)."""
    if blank(value):
        return None
    text = str(value).strip().upper()
    if text not in _LETTER:
        raise ValueError(f"answer {value!r} is not 0/1/2 or A/B/C")
    return _LETTER[text]



# ---- reading files ----------------------------------------------------------------------

def _read_file(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        else:
            # Only empty cells are missing: a raw answer such as "N/A" or "None" is text.
            frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pandas raises many types for unreadable files
        kind = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "JSON lines",
                ".json": "JSON"}.get(suffix, "CSV")
        raise ImportFileError(f"{path}: cannot be read as {kind}: {exc}") from None
    return _checked(frame, path)


def _checked(frame, where):
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:") or str(c).strip() == ""
               or str(c) == "__index_level_0__"]
    frame = frame.drop(columns=unnamed)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ImportFileError(
            f"{where}: missing column(s) {', '.join(missing)}; a Fair-PP file has "
            f"{', '.join(REQUIRED_COLUMNS)}")
    return frame


def read_tables(path: Path, split: str | None = None) -> list[Table]:
    """The tables of a file or a dataset folder, each with the split its source names.

    A folder is a ``datasets`` folder (``save_to_disk``: one split, or a DatasetDict with one
    folder per split) or a downloaded dataset repository: every CSV, parquet or JSON-lines file
    under it, its split taken from its name (``test-00000-of-00001.parquet``)."""
    path = Path(path)
    if not path.exists():
        raise ImportFileError(f"{path}: no such file or folder")
    if not path.is_dir():
        return [Table(_read_file(path), split or split_from_name(path.stem), path.name)]
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        import datasets

        loaded = datasets.load_from_disk(str(path))
        parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
        tables = []
        for name, part in parts:
            where = f"{path.name}[{name}]" if name else path.name
            named = split or normalise_split(name) or split_from_name(path.name)
            tables.append(Table(_checked(part.to_pandas(), where), named, where))
        return tables
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (
        ".csv", ".parquet", ".pq", ".jsonl") and not any(
            s.startswith(".") for s in p.relative_to(path).parts))
    if not files:
        raise ImportFileError(f"{path}: a folder without CSV, parquet or JSON-lines files "
                              "or a saved dataset")
    return [Table(_read_file(f), split or split_from_name(str(f.relative_to(path).with_suffix(""))),
                  str(f.relative_to(path))) for f in files]
