"""Word lists and normalization for the rule-based persona extractor.

Supersession needs contradicting statements to share a *subject* key:
"I'm vegetarian" and "I started eating fish again" are both about ``diet``;
"My favorite editor is Neovim" and "I switched to Helix" are both about
``editor``. :func:`domain_of` recognises those few well-known domains; other
statements get a key built from their verb and object (:func:`phrase_key`),
which makes "I started running" and "I stopped running" share ``activity:run``.
"""

from __future__ import annotations

import re

__all__ = [
    "CATEGORIES",
    "DOMAINS",
    "FAMILY_WORDS",
    "JOB_WORDS",
    "PREFERENCE_DOMAINS",
    "STYLE_WORDS",
    "content_words",
    "domain_of",
    "head_noun",
    "is_job",
    "normalize_text",
    "phrase_key",
    "stem",
    "strip_trailing_time",
    "third_person",
    "third_person_coordinated",
]

#: The categories facts are filed under (LLM output outside this set is kept as given).
CATEGORIES: tuple[str, ...] = (
    "preference", "attribute", "relationship", "habit", "style", "goal", "health", "work", "location",
)

# Domain -> pattern over a lower-cased phrase. Order matters: first match wins.
_DOMAINS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("diet", re.compile(
        r"\b(vegetarian|vegan|pescatarian|pescetarian|carnivore|omnivore|flexitarian|keto|paleo|"
        r"plant[- ]based|(eat|eats|eating|ate|have|having)\s+(meat|fish|seafood|chicken|pork|beef|"
        r"animal products|red meat))\b")),
    ("editor", re.compile(
        r"\b(neovim|n?vim|emacs|helix|vs ?code|visual studio code|sublime( text)?|notepad\+\+|"
        r"intellij|pycharm|zed editor|text editor|code editor|editor)\b")),
    ("alcohol", re.compile(r"\b(alcohol|drink(ing)?\s+(beer|wine|booze)|sober|teetotal(er)?)\b")),
    ("smoking", re.compile(r"\b(smok(e|es|ing|er)|cigarettes?|vap(e|ing))\b")),
    ("seat", re.compile(r"\b(window|aisle) seats?\b")),
)
#: The well-known subjects :func:`domain_of` recognises.
DOMAINS: frozenset[str] = frozenset(name for name, _ in _DOMAINS)
# Domains that a like/love/prefer statement may name without being about them
# ("I like vegetarian recipes" says nothing about the diet).
PREFERENCE_DOMAINS = frozenset({"seat", "editor"})

FAMILY_WORDS = frozenset(
    "wife husband spouse partner boyfriend girlfriend fiance fiancee son sons daughter daughters "
    "kid kids child children baby babies mom mother dad father parent parents brother brothers "
    "sister sisters sibling siblings twin twins grandma grandmother grandpa grandfather grandparents "
    "grandchild grandchildren grandson granddaughter aunt uncle cousin cousins nephew niece "
    "dog dogs cat cats puppy kitten pet pets horse horses bird birds fish hamster rabbit "
    "roommate roommates friend friends family mum".split()
)

JOB_WORDS = frozenset(
    "nurse doctor chef cook student teacher engineer lawyer artist writer pilot officer firefighter "
    "farmer accountant nanny mechanic cashier waiter waitress secretary vet veterinarian dentist "
    "surgeon professor researcher scientist programmer developer designer manager consultant "
    "librarian pharmacist electrician plumber carpenter soldier retiree retired homemaker "
    "freelancer intern postdoc phd analyst architect journalist editor photographer musician "
    "singer actor actress dancer coach therapist psychologist paramedic driver barista bartender "
    "baker butcher clerk janitor cleaner tutor lecturer principal administrator entrepreneur "
    "founder ceo cto owner investor banker trader realtor agent salesman saleswoman marketer "
    "recruiter translator author poet comedian athlete trainer instructor mathematician "
    "physicist chemist biologist economist statistician technician hairdresser stylist tailor "
    "model caregiver volunteer housewife househusband lifeguard mailman veteran miner "
    "welder machinist pharmacologist physician radiologist midwife counselor counsellor".split()
)
_NOT_JOBS = frozenset(
    "mother father brother sister daughter lover member user beginner winner dinner number other "
    "partner person fan customer gamer reader runner swimmer viewer listener believer follower "
    "supporter drinker eater smoker sleeper worrier introvert extrovert vegetarian vegan "
    "pescatarian carnivore meat-eater".split()
)

#: Words that make a preference or habit about how the user writes or wants answers.
STYLE_WORDS = re.compile(
    r"\b(subject lines?|titles?|headlines?|writing|write|tone|formal|informal|concise|brief|"
    r"bullet points?|emojis?|punctuation|answers?|responses?|replies|explanations?|wording|"
    r"short and punchy|verbose|code samples?)\b"
)

_DETERMINERS = frozenset(
    "a an the my our your his her their its some any this that these those all every each "
    "to really very so too also just still again now anymore any more currently recently "
    "last month week year ago lately always usually often sometimes never much more most "
    "especially of and or but because with for in on at by from about than as like".split()
)
_TRAILING_TIME = re.compile(
    r"\s+(again|now|anymore|any more|these days|nowadays|lately|recently|last (week|month|year)|"
    r"this (week|month|year)|yesterday|today|for now|by the way|btw|too|as well)\s*$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9][a-z0-9'+#.-]*")


def domain_of(phrase: str, allowed: frozenset[str] | None = None) -> str | None:
    """The well-known domain a phrase is about (``diet``, ``editor``...), if any.

    Args:
        phrase: any text.
        allowed: only these domains count (``None``: all).
    """
    lowered = phrase.lower()
    for name, pattern in _DOMAINS:
        if (allowed is None or name in allowed) and pattern.search(lowered):
            return name
    return None


def stem(word: str) -> str:
    """A crude suffix stripper: enough for "running"/"run"/"runs" to meet as keys."""
    w = word.lower().strip("'.-")
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ing") and len(w) > 5:
        w = w[:-3]
    elif w.endswith("ed") and len(w) > 4:
        w = w[:-2]
    elif w.endswith(("ches", "shes", "sses", "xes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        w = w[:-1]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]
    return w


def strip_trailing_time(phrase: str) -> str:
    """Drop "again", "now", "last month"... from the end of a phrase."""
    previous = None
    while previous != phrase:
        previous = phrase
        phrase = _TRAILING_TIME.sub("", phrase)
    return phrase


def phrase_key(phrase: str, max_words: int = 3) -> str:
    """A normalized key for an object phrase: content words, stemmed, at most ``max_words``."""
    words = [w for w in _WORD.findall(phrase.lower()) if w not in _DETERMINERS]
    return " ".join(stem(w) for w in words[:max_words])


def normalize_text(text: str) -> str:
    """A fact's text reduced for exact-duplicate detection."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _DETERMINERS]
    return " ".join(stem(w) for w in words)


def is_job(noun_phrase: str) -> bool:
    """Whether a noun phrase ("a backend engineer at Tramline") names an occupation."""
    head = _head_noun(noun_phrase)
    if not head or head in _NOT_JOBS or head in FAMILY_WORDS:
        return False
    if head in JOB_WORDS:
        return True
    return len(head) > 4 and head.endswith(("ist", "ian", "ologist", "eer")) and head not in _NOT_JOBS


def head_noun(noun_phrase: str) -> str:
    """The last word before the first preposition ("PhD student in biology" -> "student")."""
    return _head_noun(noun_phrase)


def _head_noun(noun_phrase: str) -> str:
    lowered = noun_phrase.lower()
    cut = re.split(r"\b(?:in|at|for|of|with|from|on|who|that|which|and|by|to|named|called)\b", lowered, maxsplit=1)[0]
    words = _WORD.findall(cut)
    return words[-1] if words else ""


_IRREGULAR = {"have": "has", "do": "does", "go": "goes", "be": "is", "am": "is"}
_NOT_PRESENT = frozenset(
    "can can't cannot could will would should might must may shall 'd 'll was were had did "
    "took began got gave quit went grew ate drank ran swam rode wrote read left made "
    "bought found thought felt met built taught brought caught fought sought told sold held kept slept "
    "spent sent lent meant lost paid said heard stood understood won sat became came forgot saw knew "
    "flew drew threw wore tore broke chose spoke woke froze stole drove fell hid led fed fled hung dug "
    "struck".split()
)


def third_person(verb: str) -> str:
    """``verb`` conjugated for he/she ("love" -> "loves"); past tense and modals unchanged."""
    lowered = verb.lower()
    if lowered in _IRREGULAR:
        out = _IRREGULAR[lowered]
    elif lowered in _NOT_PRESENT or lowered.endswith("ed") or lowered.endswith("n't"):
        return verb
    elif lowered.endswith(("s", "sh", "ch", "x", "z", "o")):
        out = lowered + "es"
    elif len(lowered) > 1 and lowered.endswith("y") and lowered[-2] not in "aeiou":
        out = lowered[:-1] + "ies"
    else:
        out = lowered + "s"
    return out.capitalize() if verb[:1].isupper() else out


# Base-form verbs that commonly follow "and" in a first-person clause ("I write
# Go and keep tests running"): conjugated too, so the fact reads as a sentence.
_COORDINATED_VERBS = frozenset(
    "use eat drink smoke drive own play stay listen read watch collect run swim bike cycle ride cook bake "
    "write volunteer sing paint draw knit garden hike travel go speak study attend wear grow raise keep "
    "practice practise do exercise meditate dance fish hunt camp surf ski climb teach coach manage commute "
    "walk take spend visit follow support avoid love like enjoy prefer hate need want try make work live "
    "have get feel think plan hope leave bring check test ship build code lift train".split()
)
_COORDINATION = re.compile(r"\b(and|or|but|then)\s+((?:(?:then|also|usually|always|often|still|sometimes|never|"
                           r"really|just|now|even|generally|mostly|rarely)\s+)*)([a-z]+)\b")


def third_person_coordinated(text: str) -> str:
    """Verbs coordinated with the clause's first one, conjugated too ("and keep" -> "and keeps").

    Only known base-form verbs after ``and``/``or``/``but``/``then`` change, so
    a noun ("Go and Rust") is left alone.
    """
    def fix(m: re.Match[str]) -> str:
        verb = m.group(3)
        if verb not in _COORDINATED_VERBS:
            return m.group(0)
        return f"{m.group(1)} {m.group(2)}{third_person(verb)}"

    return _COORDINATION.sub(fix, text)


def content_words(text: str) -> set[str]:
    """The words that say what a fact or turn is about: lower case, 3+ letters, no function or time words.

    A fact's leading verb ("Switched", "Eats") is kept out for a fact's own text
    by the caller's choice of words; here every word counts.
    """
    words = {w.strip("'.-") for w in _WORD.findall(text.lower())}
    return {w for w in words if len(w) >= 3 and w not in _DETERMINERS and w not in _FACT_VERBS}


# Verbs that open facts ("Switched to Helix", "Eats fish now"): what changed, not what it is.
_FACT_VERBS = frozenset(
    "is are was were has have had does doesn't don't uses use used switched switch switching started start "
    "stopped stop eats eat ate likes like loves love prefers prefer hates hate drinks drink no longer "
    "not never usually".split()
)
