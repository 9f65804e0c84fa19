"""Parsing free text and normalising option scores."""

import math

import pytest

from fairpp_app.core.answers import OptionScores, average, parse_letter


@pytest.mark.parametrize("text,expected", [
    ("A", "A"), (" B", "B"), ("C.", "C"), ("A. By merit", "A"), ("**B**", "B"),
    ("I choose B. because", "B"), ("Option C", "C"), ("Answer: A", "A"),
    ("", None), ("   ", None), (None, None), ("I cannot say", None),
    ("The answer depends", None), ("\n\nAnswer the survey question", None),
])
def test_parse_letter(text, expected):
    assert parse_letter(text) == expected


def test_unparsed_is_never_c():
    assert parse_letter("no idea at all") is None


def test_from_logprobs_normalises_and_records_other_mass():
    s = OptionScores.from_logprobs({"A": math.log(0.2), "B": math.log(0.1), "C": math.log(0.1)})
    assert s.probs == pytest.approx((0.5, 0.25, 0.25))
    assert s.other_mass == pytest.approx(0.6)
    assert s.answer == "A"


def test_missing_letter_gets_zero_probability():
    s = OptionScores.from_logprobs({"A": -1.0, "B": None, "C": -2.0}, total_known=False)
    assert s.probs[1] == 0 and sum(s.probs) == pytest.approx(1)
    assert s.other_mass is None


def test_no_letter_at_all_is_an_error():
    with pytest.raises(ValueError):
        OptionScores.from_logprobs({"A": None, "B": None, "C": None})


def test_permutation_average_maps_back():
    first = OptionScores((0.7, 0.2, 0.1))
    swapped_raw = OptionScores((0.6, 0.3, 0.1))  # scored with A and B exchanged
    avg = average(first, swapped_raw.swapped_ab())
    assert avg.probs == pytest.approx((0.5, 0.4, 0.1))
