"""MovieLens sort-form titles shown as readers write them, and looked up in either form."""
from __future__ import annotations

import pytest

from lib.movies.recommend import TitleIndex
from lib.movies.titles import display_title, split_title


@pytest.mark.parametrize("stored, shown", [
    ("Fugitive, The (1993)", "The Fugitive (1993)"),
    ("Lion King, The (1994)", "The Lion King (1994)"),
    ("Perfect Getaway, A (2009)", "A Perfect Getaway (2009)"),
    ("Affair of Love, An (Liaison pornographique, Une) (1999)", "An Affair of Love (Une Liaison pornographique) (1999)"),
    ("Haine, La (Hate) (1995)", "La Haine (Hate) (1995)"),
    ("Visitors, The (Visiteurs, Les) (1993)", "The Visitors (Les Visiteurs) (1993)"),
    ("Eighth Day, The (Huitième jour, Le) (1996)", "The Eighth Day (Le Huitième jour) (1996)"),
    ("School of Flesh, The (École de la chair, L') (1998)", "The School of Flesh (L'École de la chair) (1998)"),
    ("Tin Drum, The (Blechtrommel, Die) (1979)", "The Tin Drum (Die Blechtrommel) (1979)"),
    ("Boot, Das (Boat, The) (1981)", "Das Boot (The Boat) (1981)"),
    ("Name of the Rose, The (Name der Rose, Der) (1986)", "The Name of the Rose (Der Name der Rose) (1986)"),
    ("Mariachi, El (1992)", "El Mariachi (1992)"),
    ("Postman, The (Postino, Il) (1994)", "The Postman (Il Postino) (1994)"),
    ("Mondays in the Sun (Lunes al sol, Los) (2002)", "Mondays in the Sun (Los Lunes al sol) (2002)"),
    ("Andalusian Dog, An (Chien andalou, Un) (1929)", "An Andalusian Dog (Un Chien andalou) (1929)"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
     "The City of Lost Children (La Cité des enfants perdus) (1995)"),
    ("Good, the Bad and the Ugly, The (Buono, il brutto, il cattivo, Il) (1966)",
     "The Good, the Bad and the Ugly (Il Buono, il brutto, il cattivo) (1966)"),
    ("Seven (a.k.a. Se7en) (1995)", "Seven (a.k.a. Se7en) (1995)"),
    ("Toy Story (1995)", "Toy Story (1995)"),
    ("Cry, the Beloved Country (1995)", "Cry, the Beloved Country (1995)"),
    ("Paris, Texas (1984)", "Paris, Texas (1984)"),
    ("Babylon 5", "Babylon 5"),
    ("(500) Days of Summer (2009)", "(500) Days of Summer (2009)"),
])
def test_display_title_puts_the_article_first(stored: str, shown: str):
    assert display_title(stored) == shown


def test_display_title_keeps_the_year_split_title_reads():
    for stored in ("Fugitive, The (1993)", "Haine, La (Hate) (1995)"):
        assert split_title(display_title(stored))[1] == split_title(stored)[1]


def test_lookup_accepts_both_forms():
    index = TitleIndex(["Fugitive, The (1993)", "Toy Story (1995)", "Toy Story 2 (1999)", "Haine, La (Hate) (1995)"])
    for query in ("The Fugitive", "Fugitive, The", "fugitive", "The Fugitive (1993)"):
        assert index.resolve(query) == 0
    assert index.resolve("toy story") == 1
    assert index.resolve("La Haine") == index.resolve("Haine, La") == 3
