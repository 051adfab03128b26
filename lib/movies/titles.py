"""MovieLens titles: the year, the articles MovieLens moves to the end, and the reader's form.

MovieLens stores titles in sort form, "Fugitive, The (1993)", also for foreign articles
("Haine, La (1995)") and inside alternative titles in parentheses ("City of Lost Children,
The (Cité des enfants perdus, La) (1995)"). Readers see them with the article in front.
"""
from __future__ import annotations

import re

# Every article that occurs moved to the end of a title in ml-latest-small (English, French,
# Italian, Spanish, German, Scandinavian, Dutch, Portuguese); "L'" attaches without a space.
ARTICLES = ("The", "A", "An", "La", "Le", "Les", "L'", "Il", "I", "Gli", "Lo", "El", "Los", "Las",
            "Un", "Une", "Una", "Das", "Der", "Die", "Den", "Det", "De", "En", "Da", "O", "Os", "As")
_YEAR = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
YEAR_SUFFIX = re.compile(r"\s*\(\d{4}(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_MOVED_ARTICLE = re.compile(r"^(?P<rest>.*\S),\s*(?P<article>" + "|".join(re.escape(a) for a in ARTICLES)
                            + r")$")


def split_title(title: str) -> tuple[str, int | None]:
    """``'Toy Story (1995)'`` -> ``('Toy Story', 1995)``; titles without a year give None."""
    match = _YEAR.match(title.strip())
    if match is None:
        return title.strip(), None
    return match["name"].strip(), int(match["year"])


def _article_first(name: str) -> str:
    """'Fugitive, The' -> 'The Fugitive'; "École de la chair, L'" -> "L'École de la chair"."""
    match = _MOVED_ARTICLE.match(name.strip())
    if match is None:
        return name.strip()
    article = match["article"]
    return f"{article}{match['rest']}" if article.endswith("'") else f"{article} {match['rest']}"


def _trailing_parentheses(name: str) -> tuple[str, list[str]]:
    """'Seven (a.k.a. Se7en)' -> ('Seven', ['a.k.a. Se7en']): the main title and its alternatives."""
    alternatives: list[str] = []
    while name.endswith(")"):
        depth = 0
        for start in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[start], 0)
            if depth == 0:
                break
        if depth != 0 or not name[:start].strip():  # unbalanced, or nothing but parentheses
            break
        alternatives.insert(0, name[start + 1:-1])
        name = name[:start].rstrip()
    return name, alternatives


def display_title(title: str) -> str:
    """The title as readers write it: 'Fugitive, The (1993)' -> 'The Fugitive (1993)', also
    inside alternative titles ('City of Lost Children, The (Cité des enfants perdus, La) (1995)'
    -> 'The City of Lost Children (La Cité des enfants perdus) (1995)')."""
    text = str(title).strip()
    year = YEAR_SUFFIX.search(text)
    suffix = year.group(0).strip() if year else ""
    main, alternatives = _trailing_parentheses(text[:year.start()] if year else text)
    parts = [_article_first(main)] + [f"({_article_first(alt)})" for alt in alternatives]
    return " ".join(parts + ([suffix] if suffix else []))
