"""Sentences and first-person clauses of a user's text, and their third-person rendering.

The rule-based extractor (:mod:`.rules`) works on clauses: a sentence is cut at
commas, semicolons, dashes and at conjunctions that start a new "I ..." clause;
fragments that merely continue a list are glued back for the fact's text
("I love slow, thoughtful sci-fi"). :func:`render` turns a clause into the
third person used in fact texts ("I love hiking" -> "Loves hiking").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .lexicon import third_person, third_person_coordinated

__all__ = [
    "ADV",
    "MAX_TEXT_WORDS",
    "OBJECT_FIRST",
    "canon",
    "clauses",
    "first_person_sentences",
    "render",
    "split_sentences",
]

_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_CLAUSE = re.compile(
    r"\s*(?:,|;|:(?=\s)|\s[-\u2013\u2014]\s)\s*|\s+(?:and|but|so|because|though|although|since|while|as)\s+"
    r"(?=(?:(?:now|then|also|still|just|really)\s+)?(?:i|i'm|i've|my)\b)",
    re.IGNORECASE,
)
_LEAD = re.compile(
    r"^(?:(?:and|but|so|because|cause|since|also|well|actually|honestly|oh|yes|yeah|no|now|still|personally|plus|anyway|"
    r"btw|by the way|in fact|though|however|then|fun fact|update about me|one thing to know about me|"
    r"important|note|hi|hello|hey|ok|okay|sure|great|perfect|nice|cool|thanks|lol|haha|wow|"
    r"these days|nowadays|lately|currently|recently)\b[\s,!.:]*)+",
    re.IGNORECASE,
)
_CANON = (
    (re.compile(r"[\u2018\u2019\u02bc`]"), "'"),
    (re.compile(r"^i\s+am\b", re.I), "I'm"),
    (re.compile(r"^im\b", re.I), "I'm"),
    (re.compile(r"^i've\s+got\b", re.I), "I have"),
    (re.compile(r"^i've\b", re.I), "I have"),
    (re.compile(r"\bdo\s+not\b", re.I), "don't"),
    (re.compile(r"\bcan\s*not\b", re.I), "can't"),
    (re.compile(r"\bfavourite\b", re.I), "favorite"),
)
ADV = (
    r"(?:(?:really|also|still|usually|always|often|sometimes|generally|mostly|just|absolutely|"
    r"definitely|totally|actually|now|even|personally|honestly|genuinely|truly|basically|"
    r"currently|normally|typically|rarely|occasionally|regularly|kind of|sort of|do|recently|"
    r"finally|already|no longer|never|seriously|especially|only|mainly|mostly|also)\s+)*"
)
_STARTS_FIRST_PERSON = re.compile(r"^(?:i|i'm|my)\b", re.IGNORECASE)
# Fragments that begin a new thought rather than continue a list.
_NEW_THOUGHT = re.compile(
    r"^(?:so|but|because|which|what|where|when|how|who|why|can|could|would|should|do|does|is|are|"
    r"any|then|if|though|although|thanks|please|you|we|he|she|they|it|there|this|that)\b",
    re.IGNORECASE,
)
# Where a fact's text ends: "I'm lactose intolerant and the menu is full of cheese".
_CUT = re.compile(
    r"\s+(?:and|but|so|or)\s+(?=(?:the|a|an|it|this|that|there|they|we|you|he|she|so|what|which)\b)",
    re.IGNORECASE,
)
_FILLER = re.compile(
    r"\b(?:also|really|just|actually|honestly|personally|definitely|absolutely|totally|genuinely|"
    r"truly|basically|seriously)\s+",
    re.IGNORECASE,
)
# A leading phrase before the first-person subject: "In my spare time I ...", "Man, I am ...".
_PREFIX = re.compile(r"^((?:[\w'-]+\s+){1,5}?)(?=(?:i|i'm|i've)\s)", re.I)
_NOT_A_PREFIX = frozenset(
    "if when whether that what do does did you your think hope wish because since as why how would could "
    "should can will while although though unless until before after where who which said says told "
    "know guess bet sure glad maybe perhaps and but or so than".split()
)
# Object-first preferences: "Online courses don't really appeal to me."
OBJECT_FIRST = (
    (re.compile(r"^(?:the )?(.{3,60}?) (?:don't|doesn't|do not|does not) (?:really )?(?:appeal to|interest|suit) me\b", re.I), -1),
    (re.compile(r"^(?:the )?(.{3,60}?) (?:is|are) (?:not|n't) (?:really )?(?:for me|my (?:thing|style|cup of tea))\b", re.I), -1),
    (re.compile(r"^(?:the )?(.{3,60}?) (?:is|are) (?:really |more |totally )?(?:my (?:thing|jam|style|cup of tea)|right up my alley)\b", re.I), 1),
)
MAX_TEXT_WORDS = 18


# A single line break inside running text is a hard wrap (e-mail bodies, plain
# text notes), not a sentence end: "I have a\nsevere peanut allergy" is one
# sentence. Blank lines and lines starting a list item or heading still split.
_SOFT_WRAP = re.compile(r"(?<=[^\s.!?:;])[ \t]*\n(?![ \t]*(?:\n|[-*+#>]|\d+[.)]\s))[ \t]*(?=[a-z(])")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (also split at line breaks that are not soft wraps)."""
    text = _SOFT_WRAP.sub(" ", text)
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i've|i'd|i'll|my|me|mine|myself)\b", re.IGNORECASE)


def first_person_sentences(text: str) -> list[str]:
    """Every sentence with a first-person pronoun (the trivial extraction baseline)."""
    return [s for s in split_sentences(text.replace("\u2019", "'")) if _FIRST_PERSON.search(s)]


def canon(clause: str) -> str:
    """A clause without its discourse lead ("Also, ...") and with contractions normalized."""
    clause = _LEAD.sub("", clause.strip().strip("\"'*()[]"))
    for pattern, repl in _CANON:
        clause = pattern.sub(repl, clause)
    return clause.strip().rstrip(".!;:,")


def render(clause: str) -> str:
    """The clause in the third person ("I love hiking" -> "Loves hiking")."""
    s = clause
    if re.match(r"^my favorite\b", s, re.I):
        s = s[3:]
    elif re.match(r"^my\b", s, re.I):
        s = "their" + s[2:]
    elif re.match(r"^i'm\b", s, re.I):
        s = "is" + s[3:]
    elif re.match(r"^i have\b", s, re.I):
        s = "has" + s[6:]
    elif re.match(r"^i don't\b", s, re.I):
        s = "doesn't" + s[7:]
    else:
        m = re.match(rf"^i\s+({ADV})([\w'-]+)(.*)$", s, re.I | re.S)
        if m:
            adverbs, verb, rest = m.groups()
            adverbs = re.sub(r"\bdo\s+", "", adverbs, flags=re.I)  # emphatic: "I do love"
            s = f"{adverbs}{third_person(verb)}{rest}"
    if re.match(r"^i\b", clause, re.I):
        s = third_person_coordinated(s)  # "I write Go and keep tests running": "...and keeps..."
        # Emphatic "myself" after the object ("I have a peanut allergy myself and..."): not "themselves".
        s = re.sub(r"\s+myself(?=\s+(?:and|but|too|as well)\b)", "", s, flags=re.I)
    s = _FILLER.sub("", s)
    s = re.sub(r"\bmy\b", "their", s, flags=re.I)
    s = re.sub(r"\bme\b", "them", s, flags=re.I)
    s = re.sub(r"\bmyself\b", "themselves", s, flags=re.I)
    s = re.sub(r"\bi'm\b", "they're", s, flags=re.I)
    s = re.sub(r"\bI\b", "they", s)
    words = s.split()
    if len(words) > MAX_TEXT_WORDS:
        words = words[:MAX_TEXT_WORDS]
    s = " ".join(words).strip(" ,;:")
    return s[:1].upper() + s[1:]


def clauses(sentence: str) -> Iterator[tuple[str, str]]:
    """``(clause, head)`` pairs: a first-person clause with the fragments that continue it.

    Commas split clauses ("I'm vegetarian, so...") but also lists inside one
    ("I love slow, thoughtful sci-fi"). A fragment that does not start a new
    first-person clause, a question or a new thought is glued back to the clause
    for the fact's text; ``head`` (the clause up to its first split) is what the
    rules match and build keys from.
    """
    parts = [p for p in _CLAUSE.split(sentence) if p and p.strip()]
    i = 0
    while i < len(parts):
        head = canon(parts[i])
        i += 1
        if "?" in parts[i - 1]:
            continue
        if not _STARTS_FIRST_PERSON.match(head):
            prefix = _PREFIX.match(head)
            if prefix and not set(prefix.group(1).lower().split()) & _NOT_A_PREFIX:
                head = canon(head[prefix.end():])
            elif any(pattern.match(head) for pattern, _ in OBJECT_FIRST):
                yield head, head
                continue
            else:
                continue
        pieces = [head]
        while i < len(parts) and "?" not in parts[i]:
            nxt = parts[i].strip()
            if _STARTS_FIRST_PERSON.match(canon(nxt)) or _NEW_THOUGHT.match(nxt):
                break
            if sum(len(p.split()) for p in pieces) + len(nxt.split()) > 25:
                break
            pieces.append(nxt.rstrip(".!;:,"))
            i += 1
        clause = _CUT.split(", ".join(pieces), maxsplit=1)[0]
        yield clause, _CUT.split(head, maxsplit=1)[0]
