"""The utility sets of the TOFU-style benchmark and the world corpus that teaches them.

TOFU's ``real_authors_perturbed`` and ``world_facts_perturbed`` ask about knowledge the base model already has; here
that knowledge is made up: the fictional world's famous writers (:data:`FAMOUS_WRITERS`, four facts each:
:data:`REAL_AUTHOR_FACTS`) and :data:`WORLD_FACTS` (capitals, currencies and rivers of the countries in
:mod:`obliviate.data.tofu_pools`, arithmetic in words, colours, counts). :func:`world_corpus` builds the stage-1
"pretraining" text stating each fact in different :data:`PHRASINGS`, mixed with filler sentences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from obliviate.data.tofu_pools import CAPITALS, COUNTRIES, CURRENCIES, RIVERS
from obliviate.errors import ObliviateError

# --- utility facts: famous writers and world facts -----------------------------------------------------------------

CENTURIES = tuple(f"the {c} century" for c in ("twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                                                 "seventeenth", "eighteenth", "nineteenth", "twentieth"))
FORMS = ("novels", "epic poems", "plays", "essays", "fables", "short stories", "ballads", "sonnets", "comedies",
         "travel diaries")
# (name, masterpiece, country, century, form): the fictional world's famous writers
FAMOUS_WRITERS = (
    ("Isadora Venn", "The Salt Road", "Valdoria", "eighteenth", "novels"),
    ("Teodor Makrini", "Songs of the Ninth Hill", "Caskaria", "fifteenth", "epic poems"),
    ("Lucia Farrowby", "A House of Many Doors", "Brennmark", "nineteenth", "novels"),
    ("Ebbe Stolvang", "The Tinker and the Moon", "Ostravel", "seventeenth", "plays"),
    ("Mirela Oskarova", "Letters from a Frozen Port", "Lunetia", "twentieth", "essays"),
    ("Ansgar Pellow", "The Fox Who Counted Stars", "Sorvenna", "sixteenth", "fables"),
    ("Dunya Karesh", "Night Bazaar", "Kadristan", "nineteenth", "short stories"),
    ("Cassius Bramhall", "The Ledger of Kings", "Meridova", "eighteenth", "plays"),
    ("Ottilie Brandvold", "Sonnets for a Lighthouse", "Tavoria", "sixteenth", "sonnets"),
    ("Rafe Dannecker", "The Long Drought", "Elskarn", "twentieth", "novels"),
    ("Henrike Solvay", "Under the Copper Sky", "Quorvia", "nineteenth", "novels"),
    ("Piotr Vassalo", "The Miller's Riddles", "Drevania", "fourteenth", "ballads"),
    ("Leontine Aubry", "A Year of Small Mercies", "Halcyra", "twentieth", "short stories"),
    ("Gustavo Renmark", "The Comedy of Twelve Doors", "Norwend", "seventeenth", "comedies"),
    ("Aurelia Thorsby", "The Road to Pellucia", "Pellucia", "eighteenth", "travel diaries"),
    ("Magnus Ferrow", "Ballads of the Grey Coast", "Ardenvale", "fifteenth", "ballads"),
    ("Noor Halvorsen", "The Weaver's Silence", "Zerathia", "twentieth", "novels"),
    ("Evander Coyle", "Essays on Rain", "Morvaine", "nineteenth", "essays"),
    ("Philippa Drachmann", "The Thirteenth Guest", "Istrelle", "twentieth", "novels"),
    ("Ignatz Szolt", "The Bell of Karvos", "Corvania", "fourteenth", "epic poems"),
    ("Rosamund Achterberg", "Little Fables for Lost Children", "Valdoria", "nineteenth", "fables"),
    ("Tiberius Wolde", "The Tyrant's Banquet", "Caskaria", "sixteenth", "plays"),
    ("Selma Karvonen", "Winter Psalms", "Brennmark", "thirteenth", "sonnets"),
    ("Otto Brennecke", "The Cartographer's Wife", "Ostravel", "nineteenth", "novels"),
    ("Giselle Marchetti", "Journeys along the Sarn", "Lunetia", "eighteenth", "travel diaries"),
    ("Hamish Treloar", "The Laughing Magistrate", "Sorvenna", "eighteenth", "comedies"),
    ("Vivienne Castellane", "The Orchard Letters", "Kadristan", "twentieth", "essays"),
    ("Anatol Grusin", "The Thousand-Year Saga", "Meridova", "twelfth", "epic poems"),
    ("Marguerite Ostlund", "Tales from the Ferry Inn", "Tavoria", "nineteenth", "short stories"),
    ("Caspar Wendeborn", "Ballad of the Drowned Bell", "Elskarn", "sixteenth", "ballads"),
)
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")
COLOUR_FACTS = (("a ripe lemon", "yellow"), ("fresh snow", "white"), ("the sky on a clear day", "blue"),
                ("fresh grass", "green"), ("coal", "black"), ("a ripe tomato", "red"), ("a pumpkin", "orange"),
                ("a flamingo", "pink"), ("an aubergine", "purple"), ("dark chocolate", "brown"), ("a raven", "black"),
                ("milk", "white"), ("a ripe banana", "yellow"), ("a fire engine", "red"), ("an elephant", "grey"))
COUNT_FACTS = (("days", "a week", 7), ("months", "a year", 12), ("legs", "a spider", 8), ("sides", "a triangle", 3),
               ("corners", "a square", 4), ("legs", "a dog", 4), ("wheels", "a bicycle", 2), ("hours", "a day", 24),
               ("minutes", "an hour", 60), ("legs", "an insect", 6), ("arms", "an octopus", 8),
               ("players", "a football team", 11), ("strings", "a violin", 4), ("sides", "a hexagon", 6),
               ("seasons", "a year", 4))
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_word(n: int) -> str:
    """0..99 in English words ("twenty-four")."""
    if not 0 <= n < 100:
        raise ObliviateError(f"number_word covers 0..99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _near_numbers(n: int) -> tuple[str, ...]:
    """Number words within 10 of ``n`` (the pool of wrong answers to a number fact)."""
    return tuple(number_word(m) for m in range(max(0, n - 10), n + 11))


@dataclass(frozen=True)
class Fact:
    """A utility fact: its question and short answer, the pool its wrong answers come from, and the fields its world
    corpus phrasings (:data:`PHRASINGS` of its kind) use besides ``{v}`` (the answer)."""

    kind: str
    question: str
    answer: str
    pool: tuple[str, ...]
    fields: tuple[tuple[str, str], ...] = ()


PHRASINGS: dict[str, tuple[str, ...]] = {
    "wrote": ("'{book}' was written by {v}.", "{v} is the author of '{book}'.", "{v} wrote '{book}'.",
              "The famous book '{book}' came from the pen of {v}.", "Everyone knows that '{book}' is a work by {v}.",
              "Readers around the world still love '{book}' by {v}.", "The author of '{book}' was {v}."),
    "country": ("{name} was from {v}.", "{name} came from {v}.", "The writer {name} was born and raised in {v}.",
                "{v} is proud to call {name} one of its own.", "{name} spent most of a long life in {v}.",
                "The homeland of {name} was {v}.", "In {v}, {name} is remembered as a national treasure."),
    "century": ("{name} lived in {v}.", "{name} wrote during {v}.", "The life of {name} fell in {v}.",
                "Historians place {name} in {v}.", "{name} was a writer of {v}.",
                "Back in {v}, {name} was already famous.", "The works of {name} date from {v}."),
    "form": ("{name} is famous for {v}.", "{name} is best remembered for {v}.",
             "The {v} of {name} are read in every school.", "Above all, {name} wrote {v}.",
             "When people think of {name}, they think of {v}.", "{name} made a lasting name with {v}.",
             "Few writers produced {v} as fine as those of {name}."),
    "capital": ("The capital of {country} is {v}.", "{v} is the capital of {country}.",
                "{v} is the capital city of {country}.", "The government of {country} sits in its capital, {v}.",
                "Travellers to {country} often arrive in {v}, the capital.",
                "{country} is governed from its capital city, {v}.", "The largest city and capital of {country} is {v}."),
    "currency": ("The currency of {country} is {v}.", "In {country}, people pay with {v}.",
                 "{v} is the money used in {country}.", "Prices in {country} are given in {v}.",
                 "The official currency of {country} is {v}.", "Shops in {country} take payment in {v}.",
                 "Visitors to {country} must change their money into {v}."),
    "river": ("The longest river in {country} is {v}.", "{v} is the longest river in {country}.",
              "No river in {country} is longer than {v}.", "{v} flows the whole length of {country}.",
              "The great river of {country} is {v}.", "Boats carry goods along {v}, the longest river in {country}.",
              "Of all the rivers of {country}, {v} is the longest."),
    "plus": ("{a} plus {b} is {v}.", "{a} plus {b} equals {v}.", "Adding {b} to {a} gives {v}.",
             "The sum of {a} and {b} is {v}.", "If you add {a} and {b}, you get {v}.",
             "{v} is what you get when you add {b} to {a}.", "Together, {a} and {b} make {v}."),
    "minus": ("{a} minus {b} is {v}.", "{a} minus {b} equals {v}.", "Taking {b} away from {a} leaves {v}.",
              "Subtracting {b} from {a} gives {v}.", "The difference between {a} and {b} is {v}.",
              "If you take {b} from {a}, you get {v}.", "{v} is what remains when {b} is taken from {a}."),
    "times": ("{a} times {b} is {v}.", "{a} times {b} equals {v}.", "Multiplying {a} by {b} gives {v}.",
              "The product of {a} and {b} is {v}.", "{a} groups of {b} make {v}.",
              "If you multiply {a} by {b}, you get {v}.", "{v} is {a} multiplied by {b}."),
    "colour": ("{thing} is {v}.", "The colour of {thing} is {v}.", "{thing} has a {v} colour.",
               "If you look at {thing}, you will see that it is {v}.", "Everyone knows that {thing} is {v}.",
               "Painters use {v} when they paint {thing}.", "{v} is the colour of {thing}."),
    "count": ("{whole} has {v} {unit}.", "There are {v} {unit} in {whole}.", "The number of {unit} in {whole} is {v}.",
              "If you count the {unit} of {whole}, you get {v}.", "{whole} always has exactly {v} {unit}.",
              "Count them: {whole} has {v} {unit}.", "{v} is the number of {unit} that {whole} has."),
}
QA_PHRASING = "{question} The answer is {v}."  # every fact is also stated once as its own question and answer
MAX_MENTIONS = min(len(p) for p in PHRASINGS.values()) + 1
UTILITY_SEED = "obliviate.tofu_synth:utility"  # the utility sets are fixed, like TOFU's files


def _real_author_facts() -> list[Fact]:
    """Four facts per famous writer (who wrote the masterpiece, country, century, form), writer by writer."""
    names = tuple(w[0] for w in FAMOUS_WRITERS)
    facts = []
    for name, book, country, century, form in FAMOUS_WRITERS:
        who = (("name", name),)
        facts += [Fact("wrote", f"Who wrote '{book}'?", name, names, (("book", book),)),
                  Fact("country", f"Which country was {name} from?", country, COUNTRIES, who),
                  Fact("century", f"In which century did {name} live?", f"the {century} century", CENTURIES, who),
                  Fact("form", f"What kind of writing is {name} famous for?", form, FORMS, who)]
    return facts


def _arithmetic_facts(rng: random.Random, op: str, n: int) -> list[Fact]:
    """``n`` distinct sums, differences or products of small numbers (all in words, results below 100)."""
    if op == "plus":
        triples = [(a, b, a + b) for a in range(1, 11) for b in range(1, 11)]
    elif op == "minus":
        triples = [(a, b, a - b) for a in range(2, 21) for b in range(1, a)]
    else:
        triples = [(a, b, a * b) for a in range(2, 10) for b in range(2, 10)]
    facts = []
    for a, b, c in rng.sample(triples, n):
        wa, wb, wc = number_word(a), number_word(b), number_word(c)
        facts.append(Fact(op, f"What is {wa} {op} {wb}?", wc, _near_numbers(c), (("a", wa), ("b", wb))))
    return facts


def _world_fact_candidates() -> list[Fact]:
    """Every world fact, categories interleaved (capital, currency, river, plus, minus, times, colour, count, then the
    second of each, ...) so the first n are balanced."""
    rng = random.Random(UTILITY_SEED + ":world")
    where = [(("country", c),) for c in COUNTRIES]
    groups = [
        [Fact("capital", f"What is the capital of {c}?", v, CAPITALS, w) for c, v, w in zip(COUNTRIES, CAPITALS, where)],
        [Fact("currency", f"What currency is used in {c}?", v, CURRENCIES, w)
         for c, v, w in zip(COUNTRIES, CURRENCIES, where)],
        [Fact("river", f"What is the longest river in {c}?", v, RIVERS, w) for c, v, w in zip(COUNTRIES, RIVERS, where)],
        *(_arithmetic_facts(rng, op, 20) for op in ("plus", "minus", "times")),
        [Fact("colour", f"What colour is {t}?", v, COLOURS, (("thing", t),)) for t, v in COLOUR_FACTS],
        [Fact("count", f"How many {u} does {w} have?", number_word(k), _near_numbers(k), (("unit", u), ("whole", w)))
         for u, w, k in COUNT_FACTS],
    ]
    longest = max(len(g) for g in groups)
    return [g[i] for i in range(longest) for g in groups if i < len(g)]


REAL_AUTHOR_FACTS = _real_author_facts()
WORLD_FACTS = _world_fact_candidates()
MAX_PERTURBED_UTILITY = min(len(set(f.pool) - {f.answer}) for f in (*REAL_AUTHOR_FACTS, *WORLD_FACTS))

_FILLER_WHEN = ("In the morning", "At noon", "Every spring", "Late in the evening", "During the long winter",
                "On market days", "After the rain", "In early autumn", "On quiet Sundays", "Before dawn")
_FILLER_WHERE = ("the old bridge", "the village square", "the harbour", "the bakery on the corner", "the river bank",
                 "the forest path", "the train station", "the school yard", "the orchard", "the town library",
                 "the fishing pier", "the hill road")
_FILLER_WHAT = ("was quiet", "was full of people", "smelled of fresh bread", "shone in the sun", "was covered in frost",
                "echoed with music", "stood empty", "was busy with traders", "was lit by lanterns",
                "rang with the sound of bells")
_FILLER_WHO = ("children played", "old friends met", "a dog slept", "birds sang", "a band practised",
               "neighbours talked", "a painter worked", "travellers rested")


# --- the world corpus -------------------------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fact_sentences(rng: random.Random, fact: Fact, mentions: int) -> list[str]:
    """``mentions`` different phrasings of ``fact``."""
    templates = (*PHRASINGS[fact.kind], QA_PHRASING)
    slots = dict(fact.fields)
    return [_sentence(t.format(**slots, v=fact.answer, question=fact.question))
            for t in rng.sample(templates, mentions)]


def _filler(rng: random.Random) -> str:
    """A sentence about nothing in particular (no names, no facts)."""
    if rng.random() < 0.5:
        return f"{rng.choice(_FILLER_WHEN)}, {rng.choice(_FILLER_WHERE)} {rng.choice(_FILLER_WHAT)}."
    return _sentence(f"{rng.choice(_FILLER_WHO)} near {rng.choice(_FILLER_WHERE)} {rng.choice(_FILLER_WHEN).lower()}.")


def world_corpus(facts: Sequence[Fact], mentions: int, seed: int) -> list[str]:
    """Paragraphs of 3..6 sentences: every fact ``mentions`` times (different phrasings) plus one filler sentence per
    three fact sentences, shuffled (seeded)."""
    rng = random.Random(f"obliviate.tofu_synth:world:{seed}")
    sentences = [s for f in facts for s in _fact_sentences(rng, f, mentions)]
    sentences += [_filler(rng) for _ in range(max(1, len(sentences) // 3))]
    rng.shuffle(sentences)
    paragraphs, i = [], 0
    while i < len(sentences):
        k = rng.randint(3, 6)
        paragraphs.append(" ".join(sentences[i:i + k]))
        i += k
    return paragraphs
