"""Linguistic tasks over common English words: verb forms (lemminflect), plurals (inflect) and
antonyms (WordNet 3.0), with wordfreq deciding what is common."""

from __future__ import annotations

import functools

from taskvec.tasks.base import MAPPING_RULES, Pair, Task
from taskvec.tasks.sources import (
    WORDNET_DIR,
    common_words,
    debian_source,
    is_plain_word,
    python_source,
    wordnet_antonyms,
    wordnet_dominant_pos,
    zipf,
)

VOCABULARY = 20000  # English words considered, most frequent first
MIN_ZIPF = 3.0  # an output must be at least this common (about once per million words)
MAX_PAIRS = 1000
# Modal and auxiliary words that WordNet also lists as rare nouns or verbs ("a can", "to will").
FUNCTION_WORDS = frozenset(
    {"can", "could", "may", "might", "must", "shall", "should", "will", "would", "being", "people"}
)


def _wordnet() -> dict:
    return debian_source("wordnet-base", WORDNET_DIR / "index.verb")


def _common(pos: str) -> list[str]:
    """Common English words used mostly as ``pos`` (by WordNet's tagged counts), most frequent first."""
    dominant = wordnet_dominant_pos()
    return [
        w
        for w in common_words("en", VOCABULARY)
        if len(w) >= 3 and is_plain_word(w) and w not in FUNCTION_WORDS and dominant.get(w) == pos
    ]


@functools.cache
def _common_verbs() -> tuple[str, ...]:
    import lemminflect

    return tuple(w for w in _common("verb") if lemminflect.getAllLemmas(w, upos="VERB").get("VERB") == (w,))


def _verb_form(tag: str) -> list[Pair]:
    import lemminflect

    pairs = []
    for verb in _common_verbs():
        forms = lemminflect.getInflection(verb, tag=tag)
        if forms and forms[0] != verb and is_plain_word(forms[0]) and zipf(forms[0], "en") >= MIN_ZIPF:
            pairs.append(Pair(verb, (forms[0],)))
    return pairs[:MAX_PAIRS]


def _past(seed: int) -> list[Pair]:
    return _verb_form("VBD")


def _gerund(seed: int) -> list[Pair]:
    return _verb_form("VBG")


def _plural_singular(seed: int) -> list[Pair]:
    import inflect

    engine = inflect.engine()
    pairs, seen = [], set()
    for noun in _common("noun"):
        plural = engine.plural_noun(noun)
        if plural != noun and plural not in seen and is_plain_word(plural) and zipf(plural, "en") >= MIN_ZIPF:
            seen.add(plural)
            pairs.append(Pair(plural, (noun,)))
    return pairs[:MAX_PAIRS]


def _antonyms(seed: int) -> list[Pair]:
    """Antonyms within each word's dominant part of speech, most common antonym first."""
    antonyms = {pos: wordnet_antonyms(pos) for pos in ("adj", "verb", "noun", "adv")}
    dominant = wordnet_dominant_pos()
    pairs = []
    for word in common_words("en", VOCABULARY):
        pos = dominant.get(word)
        if pos is None or len(word) < 3 or not is_plain_word(word):
            continue
        targets = sorted(t for t in antonyms[pos].get(word, ()) if is_plain_word(t) and zipf(t, "en") >= MIN_ZIPF)
        if targets:
            targets.sort(key=lambda t: -zipf(t, "en"))
            pairs.append(Pair(word, tuple(targets)))
    return pairs[:MAX_PAIRS]


def _sources(*packages: str):
    def sources() -> list[dict]:
        return [python_source("wordfreq"), *(python_source(p) for p in packages), _wordnet()]

    return sources


VERBS_DIFFER = (
    f"Source: lemminflect's inflection of the common English verbs in wordfreq's {VOCABULARY} most "
    f"frequent words (WordNet decides the part of speech), up to {MAX_PAIRS}. The paper: a public "
    "list of English verb conjugations. Filter and scoring as the paper (one-token answers, leading-space "
    "rule, exact)."
)

LINGUISTIC_TASKS = (
    Task(
        "present_simple_past_simple",
        "linguistic",
        "the past simple of a common English verb",
        "go -> went",
        _past,
        MAPPING_RULES,
        sources=_sources("lemminflect"),
        paper_task="present_simple_past_simple",
        differs=VERBS_DIFFER,
    ),
    Task(
        "present_simple_gerund",
        "linguistic",
        "the gerund of a common English verb",
        "go -> going",
        _gerund,
        MAPPING_RULES,
        sources=_sources("lemminflect"),
        paper_task="present_simple_gerund",
        differs=VERBS_DIFFER,
    ),
    Task(
        "plural_singular",
        "linguistic",
        "the singular of a common English plural noun",
        "cats -> cat",
        _plural_singular,
        MAPPING_RULES,
        sources=_sources("inflect"),
        paper_task="plural_singular",
        differs="Source: inflect's plurals of common English nouns, regular ones included. The paper uses only "
        "irregular plurals (a public list: men -> man, cacti -> cactus), a harder task. Filter and scoring "
        "as the paper.",
    ),
    Task(
        "antonyms",
        "linguistic",
        "an antonym of a common English word (any WordNet antonym counts)",
        "hot -> cold",
        _antonyms,
        MAPPING_RULES,
        sources=_sources(),
        paper_task="antonyms",
        differs="Source: WordNet 3.0's antonym pointers for common English words, every antonym counting. The "
        "paper: its own antonym list, one answer each. Filter and scoring as the paper.",
    ),
)
