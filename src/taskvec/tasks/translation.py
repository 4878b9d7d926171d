"""Translation of common words with Debian's FreeDict dictionaries; wordfreq decides what is common.

A word may have several translations: every one the dictionary gives (that is itself a common
word of the target language) counts as correct. As in the paper's code, each model keeps the pairs
with a one-token translation (leading-space rule) and a prediction must equal a translation.
"""

from __future__ import annotations

from taskvec.tasks.base import MAPPING_RULES, Pair, Task
from taskvec.tasks.sources import common_words, freedict, is_plain_word, python_source, zipf

VOCABULARY = 5000  # source-language words considered, most frequent first
SKIP_MOST_FREQUENT = 200  # the most frequent words are mostly function words with dozens of "translations"
MIN_ZIPF = 2.5  # a translation must be at least this common in the target language
MAX_ANSWERS = 4  # the dictionary's first translations; later ones are rarer senses
MAX_PAIRS = 1000
LANGUAGES = {"en": "eng", "fr": "fra", "es": "spa"}
NAMES = {"en": "English", "fr": "French", "es": "Spanish"}


def _translation(source: str, target: str):
    def build(seed: int) -> list[Pair]:
        dictionary, _ = freedict(f"{LANGUAGES[source]}-{LANGUAGES[target]}")
        pairs = []
        for word in common_words(source, VOCABULARY)[SKIP_MOST_FREQUENT:]:
            if not is_plain_word(word) or word not in dictionary:
                continue
            answers = list(
                dict.fromkeys(t for t in dictionary[word] if is_plain_word(t) and zipf(t, target) >= MIN_ZIPF)
            )
            if answers:
                pairs.append(Pair(word, tuple(answers[:MAX_ANSWERS])))
        return pairs[:MAX_PAIRS]

    def sources() -> list[dict]:
        return [python_source("wordfreq"), freedict(f"{LANGUAGES[source]}-{LANGUAGES[target]}")[1]]

    name = f"translation_{source}_{target}"
    example = {"fr_en": "chat -> cat", "es_en": "perro -> dog", "en_fr": "cat -> chat", "en_es": "dog -> perro"}
    differs = (
        f"Source: the {source}->{target} FreeDict dictionary (Debian) over wordfreq's {VOCABULARY} most common "
        f"{NAMES[source]} words (the {SKIP_MOST_FREQUENT} most frequent skipped), up to {MAX_ANSWERS} "
        "translations each, any of which counts. The paper: 1,000 common English words aligned with their "
        "translations in a word-frequency list, one answer each, WordNet synonyms of it also counting."
    )
    return Task(
        name,
        "translation",
        f"{NAMES[target]} translation of a common {NAMES[source]} word",
        example[f"{source}_{target}"],
        build,
        MAPPING_RULES,
        sources=sources,
        paper_task=name,
        differs=differs,
    )


TRANSLATION_TASKS = (
    _translation("fr", "en"),
    _translation("es", "en"),
    _translation("en", "fr"),
    _translation("en", "es"),
)
