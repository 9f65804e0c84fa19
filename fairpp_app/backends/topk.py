"""Letter log-probabilities from a server's top-k list, for the HTTP backends.

The OpenAI-compatible and Ollama backends both get, for the first generated position,
the k most likely tokens with their log-probabilities, and both must turn that into one
log-probability per option letter the same way, so that a model scores alike behind
either server.

The rule: a token counts for a letter when it is that letter once surrounding whitespace
is stripped ("A", " A", "A\\n", "\\tA"), and the spellings of one letter are summed (in
probability). Whitespace is the only thing a tokenizer glues onto a bare letter without
changing what it says: after "Answer:" most vocabularies predict " A", after a chat turn
"A", and some servers' tokenizers emit "A\\n" as one token. "A.", "A)" or "Answer" do not
count: they may begin a different reply (an abbreviation, a list) and would inflate the
letter. A letter none of whose spellings is in the top k has no log-probability (None);
entries whose log-probability is missing or not finite are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from fairpp_app.core.answers import LETTERS


def letter_logprobs(top: Mapping[str, float | None] | Iterable[tuple[str, float | None]]
                    ) -> dict[str, float | None]:
    """Log-probability per letter among top-k ``(token, logprob)`` pairs (None = absent)."""
    pairs = top.items() if isinstance(top, Mapping) else top
    found: dict[str, list[float]] = {letter: [] for letter in LETTERS}
    for token, logprob in pairs:
        if not isinstance(token, str) or logprob is None:
            continue
        letter = token.strip()
        if letter in found and math.isfinite(float(logprob)):
            found[letter].append(float(logprob))
    out: dict[str, float | None] = {}
    for letter, values in found.items():
        if not values:
            out[letter] = None
            continue
        peak = max(values)
        out[letter] = peak + math.log(sum(math.exp(v - peak) for v in values))
    return out
