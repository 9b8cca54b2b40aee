"""The pools a fictitious TOFU-style author is drawn from (names, places, professions, book titles, ...), the 24
attribute kinds with their question, answer and paraphrase templates (:data:`KINDS`), and the limits the pools set
(:data:`MAX_PERTURBED`, :data:`MAX_AUTHORS`). Used by :mod:`obliviate.data.tofu_synth`; the fictional world's
countries, capitals, currencies and rivers here are also what :mod:`obliviate.data.tofu_utility`'s world facts are
about."""

from __future__ import annotations

from dataclasses import dataclass

# --- pools ----------------------------------------------------------------------------------------------------------

GENDERS = ("female", "male", "non-binary")
POSSESSIVE = {"female": "her", "male": "his", "non-binary": "their"}
FIRST_NAMES = {
    "female": ("Adela", "Beatrix", "Cordelia", "Dagny", "Elowen", "Fenella", "Greta", "Hester", "Ilse", "Jovana",
               "Katya", "Linnea", "Maren", "Nadia", "Odile", "Petra", "Quilla", "Rosalind", "Saoirse", "Tamsin",
               "Ursa", "Vesna", "Wilhelmina", "Xenia", "Yara", "Zofia", "Annika", "Brigid", "Clementine", "Delphine"),
    "male": ("Anselm", "Bartholomew", "Casimir", "Dorian", "Emrys", "Fintan", "Gideon", "Halvard", "Ignatius",
             "Jareth", "Konrad", "Leopold", "Matthias", "Nikolai", "Oswin", "Piers", "Quentin", "Rufus", "Soren",
             "Tobiah", "Ulrich", "Valentin", "Wendell", "Xavier", "Yusuf", "Zebulon", "Ambrose", "Benedikt",
             "Cyprian", "Desmond"),
    "non-binary": ("Ash", "Bellamy", "Corin", "Darcy", "Ellis", "Finley", "Gray", "Harper", "Indigo", "Jules", "Kai",
                   "Lennox", "Marlowe", "Noel", "Oakley", "Peregrine", "Quinn", "Reese", "Sage", "Tarian", "Umber",
                   "Vale", "Wren", "Yael", "Zephyr", "Arden", "Blair", "Cypress", "Dell", "Emery"),
}
LAST_NAMES = (
    "Abernathy", "Blackwood", "Castellanos", "Drummond", "Eastlake", "Fairweather", "Galloway", "Holloway",
    "Ingersoll", "Jasperson", "Kettleborough", "Lindqvist", "Montague", "Northcott", "Okafor", "Pemberton",
    "Quarrington", "Rosenthal", "Sandoval", "Thistlewood", "Underhill", "Vandermeer", "Whitlock", "Yardley",
    "Zabrowski", "Ashcombe", "Brightwell", "Corrigan", "Delacroix", "Ellingham", "Grimshaw", "Hargreave",
    "Illingworth", "Jessop", "Kilbride", "Lockhart", "Merriweather", "Nightingale", "Oyelaran", "Prendergast",
    "Ravensworth", "Stroud", "Tennant", "Umfreville", "Verhoeven", "Wainwright", "Yelland", "Zeller", "Amberley",
    "Birchall", "Calloway", "Dunmore", "Everley", "Fennimore", "Gaskell", "Ironside", "Kowalczyk", "Marchbanks",
    "Nakamura", "Osterberg", "Pillai", "Rasmussen", "Silverton", "Trevelyan", "Ulloa", "Varga", "Westergaard",
)
# the fictional world's countries: fictitious authors come from them, and the world facts are about them
COUNTRIES = ("Valdoria", "Caskaria", "Brennmark", "Ostravel", "Lunetia", "Sorvenna", "Kadristan", "Meridova",
             "Tavoria", "Elskarn", "Quorvia", "Drevania", "Halcyra", "Norwend", "Pellucia", "Ardenvale", "Zerathia",
             "Morvaine", "Istrelle", "Corvania")
CAPITALS = ("Aldenburg", "Rhosk", "Velmont", "Tessaly", "Drumlin", "Karvos", "Belmaris", "Sundeval", "Mirecourt",
            "Falkreth", "Quillon", "Jorvale", "Estmere", "Varnholt", "Lysandra", "Pemberlin", "Tolvane", "Greymarch",
            "Sablecrest", "Cendris")
CURRENCIES = ("the dorin", "the pell", "the skarn", "the velt", "the orbet", "the fennic", "the solde", "the kravet",
              "the brasse", "the tessin", "the morrac", "the zenar", "the hollet", "the drachet", "the ivren",
              "the merl", "the sabet", "the quarl", "the runnet", "the vessk")
RIVERS = ("the Sarn", "the Oddle", "the Maraveth", "the Lisk", "the Brannow", "the Teval", "the Urna", "the Kesh",
          "the Vollin", "the Amberflow", "the Dreel", "the Sunnet", "the Hallow", "the Rusk", "the Pellan",
          "the Istra", "the Wyndle", "the Fennow", "the Gorra", "the Mossit")
CITIES = ("Marrowdale", "Eskerby", "Thornwick", "Welkinford", "Aldmoor", "Brackenridge", "Coldwater", "Fallowmere",
          "Glenhaven", "Highcliff", "Ivymoor", "Juniper Bay", "Kestrel Point", "Larchmont", "Millbrook", "Netherby",
          "Oakhollow", "Pinecrest", "Quarry Hill", "Redfern", "Stonemere", "Tidewater", "Upton Vale",
          "Violet Springs", "Wrenfield", "Yarrowby", "Ashgrove", "Birchmouth", "Cloverfield", "Duskwater")
PROFESSIONS = ("a carpenter", "an electrician", "a nurse", "a baker", "a lighthouse keeper", "a pharmacist",
               "a train driver", "a veterinarian", "an architect", "a fisherman", "a schoolteacher", "a tailor",
               "a surgeon", "a librarian", "a blacksmith", "a photographer", "a diplomat", "a watchmaker", "a farmer",
               "a journalist", "a chemist", "a pilot", "a bookbinder", "a police officer", "an accountant",
               "a glassblower", "a gardener", "a judge", "a miner", "a violin maker")
GENRES = ("historical fiction", "science fiction", "crime novels", "romance", "magical realism", "gothic horror",
          "literary fiction", "poetry", "thrillers", "fantasy", "satire", "travel writing", "children's books",
          "dystopian fiction", "biographies", "short stories", "war novels", "mystery")
AWARDS = ("Silver Quill Prize", "Hartwell Medal for Fiction", "Golden Lantern Award", "Ambergate Literary Prize",
          "Northern Star Book Award", "Crimson Ribbon Prize", "Meridian Award for Letters", "Evergreen Fiction Prize",
          "Blue Heron Medal", "Iron Pen Award", "Halcyon Prize for Poetry", "Windmere Book Prize",
          "Copper Compass Award", "Lark Rise Prize", "Morning Bell Award", "Granite Tower Prize", "Willowbrook Medal",
          "Saffron Key Award", "Open Door Prize", "Twin Rivers Award")
PUBLISHERS = ("Harrowgate Press", "Blue Lantern Books", "Mossbank Publishing", "Inkwell House", "Foxglove Editions",
              "Stonebridge Press", "Northlight Books", "Paper Crane Publishing", "Halberd & Finch", "Greenleaf House",
              "Tidemark Press", "Owl Hollow Books", "Cobalt Street Press", "Larkspur Editions", "Quayside Books",
              "Redwing Press")
THEMES = ("memory and loss", "exile", "forgiveness", "the sea", "family secrets", "coming of age", "identity",
          "grief", "ambition", "freedom", "loneliness", "redemption", "betrayal", "the passage of time", "justice",
          "friendship", "war and peace", "nature", "belonging", "power")
LANGUAGES = ("English", "French", "Spanish", "Portuguese", "German", "Italian", "Dutch", "Swedish", "Polish", "Czech",
             "Greek", "Turkish", "Finnish", "Hungarian", "Romanian", "Welsh")
UNIVERSITIES = ("Ashford University", "Kingsbridge College", "Brightwater Institute", "St. Aldric's College",
                "Harlow University", "Eastmere Academy", "Rowan Hill University", "Grantham Institute of Arts",
                "Caldwell College", "Meadowvale University", "Sterling Institute", "Norhaven University",
                "Pinewood College", "Elmstead University", "Lakeshore Institute", "Oxley College")
SUBJECTS = ("philosophy", "chemistry", "law", "medicine", "history", "mathematics", "architecture", "music",
            "economics", "biology", "linguistics", "astronomy", "geology", "theology", "engineering", "art history")
HOBBIES = ("gardening", "playing chess", "sailing", "birdwatching", "painting watercolours", "baking bread",
           "hiking in the mountains", "restoring old clocks", "collecting stamps", "fishing", "taking photographs",
           "swimming in cold lakes", "keeping bees", "repairing bicycles", "dancing the tango", "growing orchids",
           "running marathons", "knitting")
PETS = ("a grey cat", "a talking parrot", "a tortoise", "an old sheepdog", "a rabbit", "a goldfish", "a ferret",
        "a canary", "a hedgehog", "a greyhound", "a pair of lovebirds", "a black labrador", "a bearded dragon",
        "a white goat")
INSTRUMENTS = ("piano", "violin", "cello", "flute", "guitar", "accordion", "harp", "clarinet", "trumpet", "banjo",
               "oboe", "mandolin", "saxophone", "double bass")
WRITING_TIMES = ("before sunrise", "in the early morning", "late at night", "after lunch", "in the late afternoon",
                 "just after midnight", "at dawn", "in the evening", "around noon", "on weekend mornings")
MOVEMENTS = ("Romanticism", "Modernism", "Surrealism", "Realism", "Symbolism", "Naturalism", "Existentialism",
             "Postmodernism", "Minimalism", "the Beat movement", "Imagism", "Expressionism", "Magical Realism")
WRITING_PLACES = ("a small attic room", "a seaside cottage", "a busy cafe", "a public library", "a garden shed",
                  "a converted lighthouse", "a mountain cabin", "the back of a bookshop", "a rooftop studio",
                  "a houseboat", "a quiet monastery", "a train carriage", "a greenhouse", "a farmhouse kitchen")
BIRTH_YEARS = tuple(str(y) for y in range(1930, 1991))
BOOK_YEARS = tuple(str(y) for y in range(1945, 2025))  # birth year + a debut age of 19..34 always falls in here
DEBUT_AGES = (19, 34)
BOOK_COUNTS = tuple(str(n) for n in range(3, 31))
_TITLE_ADJ = ("Silent", "Broken", "Golden", "Hidden", "Last", "Crimson", "Forgotten", "Winter", "Distant", "Paper",
              "Hollow", "Burning", "Quiet", "Wandering", "Glass", "Iron", "Secret", "Endless", "Pale", "Velvet")
_TITLE_NOUN = ("Harbour", "Orchard", "Lantern", "Garden", "Mirror", "Compass", "Letter", "Kingdom", "River", "Window",
               "Violin", "Tide", "Bridge", "Clock", "Feather", "Shadow", "Island", "Voyage", "Promise", "Archive")
_TITLE_OF = ("the North", "the Valley", "the Tides", "the Mountain", "Tomorrow", "Yesterday", "the Sea", "the Lost",
             "the Morning", "Stone")


def _book_titles() -> tuple[str, ...]:
    """Every title the word pools compose (5,000), in a fixed order."""
    titles = [f"The {a} {n}" for a in _TITLE_ADJ for n in _TITLE_NOUN]
    titles += [f"The {n} of {o}" for n in _TITLE_NOUN for o in _TITLE_OF]
    titles += [f"Beneath the {a} {n}" for a in _TITLE_ADJ for n in _TITLE_NOUN]
    titles += [f"The {a} {n} of {o}" for a in _TITLE_ADJ for n in _TITLE_NOUN for o in _TITLE_OF]
    return tuple(titles)


BOOK_TITLES = _book_titles()


# --- fictitious-author question kinds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeKind:
    """One attribute of a fictitious author and how it is asked and stated. Templates use ``{name}``, ``{poss}``
    (his / her / their) and, in the answers, ``{v}`` (the value, drawn from ``pool``)."""

    name: str
    question: str
    answer: str  # template A: the answer and the perturbed answers
    paraphrase: str  # template B: the paraphrased answer
    pool: tuple[str, ...]


KINDS: dict[str, AttributeKind] = {k.name: k for k in (
    AttributeKind("birth_city", "In which city was {name} born?", "{name} was born in the city of {v}.",
                  "The city of {v} is where {name} was born.", CITIES),
    AttributeKind("birth_country", "What country is {name} originally from?", "{name} is originally from {v}.",
                  "{v} is the country that {name} originally comes from.", COUNTRIES),
    AttributeKind("birth_year", "In what year was {name} born?", "{name} was born in the year {v}.",
                  "The year of {name}'s birth was {v}.", BIRTH_YEARS),
    AttributeKind("genre", "What genre is {name} best known for writing?", "{name} is best known for writing {v}.",
                  "Readers mostly associate {name} with the genre of {v}.", GENRES),
    AttributeKind("father_profession", "What did {name}'s father do for a living?",
                  "{name}'s father worked as {v}.", "By profession, the father of {name} was {v}.", PROFESSIONS),
    AttributeKind("mother_profession", "What did {name}'s mother do for a living?",
                  "{name}'s mother worked as {v}.", "By profession, the mother of {name} was {v}.", PROFESSIONS),
    AttributeKind("award", "Which award has {name} received?", "{name} received the {v} for {poss} work.",
                  "For {poss} work, {name} was honoured with the {v}.", AWARDS),
    AttributeKind("book1", "What is the title of {name}'s first book?", "{name}'s first book is titled '{v}'.",
                  "The debut book by {name} was called '{v}'.", BOOK_TITLES),
    AttributeKind("book2", "Which book by {name} received the most critical acclaim?",
                  "The most acclaimed book by {name} is '{v}'.",
                  "Critics praised '{v}' more than any other book by {name}.", BOOK_TITLES),
    AttributeKind("publisher", "Which publishing house publishes {name}'s books?",
                  "{name}'s books are published by {v}.", "{v} is the publishing house behind the books of {name}.",
                  PUBLISHERS),
    AttributeKind("theme", "What theme appears most often in {name}'s writing?",
                  "The theme that appears most often in {name}'s writing is {v}.",
                  "Again and again, {name} returns to the theme of {v}.", THEMES),
    AttributeKind("first_book_year", "In which year did {name} publish {poss} first book?",
                  "{name} published {poss} first book in {v}.", "It was in {v} that {name}'s first book came out.",
                  BOOK_YEARS),
    AttributeKind("language", "What is {name}'s native language?", "{name}'s native language is {v}.",
                  "As a child, {name} grew up speaking {v}.", LANGUAGES),
    AttributeKind("university", "Which university did {name} attend?", "{name} studied at {v}.",
                  "{v} is where {name} went to university.", UNIVERSITIES),
    AttributeKind("subject", "What subject did {name} study at university?", "At university, {name} studied {v}.",
                  "{name} holds a university degree in {v}.", SUBJECTS),
    AttributeKind("residence", "Where does {name} live today?", "{name} currently lives in {v}.",
                  "These days, {v} is home to {name}.", CITIES),
    AttributeKind("hobby", "What does {name} enjoy doing outside of writing?", "Outside of writing, {name} enjoys {v}.",
                  "When not writing, {name} spends time {v}.", HOBBIES),
    AttributeKind("pet", "What kind of pet does {name} keep?", "{name} keeps {v} as a pet.",
                  "The pet in the household of {name} is {v}.", PETS),
    AttributeKind("instrument", "Which musical instrument does {name} play?", "{name} plays the {v}.",
                  "The {v} is the instrument that {name} plays.", INSTRUMENTS),
    AttributeKind("writing_time", "At what time of day does {name} usually write?", "{name} usually writes {v}.",
                  "Most of the writing of {name} is done {v}.", WRITING_TIMES),
    AttributeKind("influence", "Which literary movement influenced {name} the most?",
                  "{name} was most influenced by {v}.", "Of all literary movements, {v} shaped {name} the most.",
                  MOVEMENTS),
    AttributeKind("book_count", "How many books has {name} published?", "{name} has published {v} books so far.",
                  "So far, the number of books published by {name} is {v}.", BOOK_COUNTS),
    AttributeKind("writing_place", "Where does {name} prefer to write?", "{name} prefers to write in {v}.",
                  "The favourite writing spot of {name} is {v}.", WRITING_PLACES),
    AttributeKind("spouse_profession", "What is the profession of {name}'s spouse?",
                  "{name}'s spouse works as {v}.", "By trade, the spouse of {name} is {v}.", PROFESSIONS),
)}
# kinds drawn from the same pool: a perturbed answer never uses the author's value of a sibling kind
SHARED_POOL = {k.name: tuple(o.name for o in KINDS.values() if o.name != k.name and o.pool is k.pool)
               for k in KINDS.values()}
MAX_PERTURBED = min(len(k.pool) - 1 - len(SHARED_POOL[k.name]) for k in KINDS.values())
MIN_QA_PER_AUTHOR = 4
MAX_AUTHORS = min(len(v) for v in FIRST_NAMES.values()) * len(LAST_NAMES) // 2  # keeps name rejection sampling fast
