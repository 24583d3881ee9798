"""The rule-based persona extractor: first-person statements, no LLM.

It reads the user's own words (documents and the user's side of chats, never
the assistant's), splits them into sentences and clauses, and matches each
clause that starts with "I" or "my" against a small set of patterns: "I'm...",
"I love / like / hate / prefer...", "my favorite X is Y", "I work as / at...",
"I live in...", "I have...", "I started / stopped / quit / no longer / switched
to...", "I'm allergic to...", "I'm training for...", habits ("I usually...").
Questions, requests ("I'd like...", "I need...") and hedges ("I think...")
are skipped: they are not facts about the user.

Each match becomes a :class:`~personalize.persona.base.FactCandidate` with a
third-person text ("Loves hiking"), a category, a polarity and a subject key
shared by statements that contradict each other (see :mod:`.lexicon`). The
output is deterministic and its generator is ``"rules"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..types import Chunk, Fact
from .base import FactCandidate
from .clauses import ADV, OBJECT_FIRST, clauses, first_person_sentences, render, split_sentences
from .lexicon import (
    FAMILY_WORDS,
    PREFERENCE_DOMAINS,
    STYLE_WORDS,
    domain_of,
    head_noun,
    is_job,
    phrase_key,
    stem,
    strip_trailing_time,
)

__all__ = ["RuleExtractor", "Statement", "extract_statements", "first_person_sentences", "split_sentences"]

# Clauses that start like a fact but are requests, hedges or plans of the moment.
_SKIP = re.compile(
    r"^(?:i'd(?! rather| much rather)|i'll|i would(?! rather| much rather)|i will|i might|i could|i should|i was wondering|i wonder|i think|"
    r"i guess|i believe|i feel like|i need|i want (?!to)|i'm (?:not sure|sorry|glad|happy to|going|"
    r"looking|thinking|wondering|trying to find|about to|here|back|done|ready|curious|afraid|sure|"
    r"excited|fine|good|great|okay|ok)\b|i have (?:been|had|to|got to|never|no idea|"
    r"a question|questions|a few questions|a quick question|an idea|a feeling|a meeting|time|plans)\b|"
    r"i hope (?!to)|i can(?!')\b|i can't (?!stand)|i know|i see|i mean|i agree|i understand|i remember|"
    r"i forgot|i heard|i saw|i said|i asked|i told|i got|i finished|i tried|i was|i did)",
    re.IGNORECASE,
)
_PRONOUN_OBJECT = re.compile(r"^(?:it|that|this|them|those|these|one|so|more|less|too|both)\b", re.I)
_HABIT_ADVERBS = ("usually", "always", "often", "normally", "typically", "regularly", "generally",
                  "never", "rarely", "sometimes", "mostly", "every")
_HABIT_VERBS = (
    "use|eat|drink|smoke|vape|drive|own|play|stay|major|minor|listen|read|watch|collect|run|swim|bike|cycle|ride|cook|bake|"
    "write|volunteer|sing|paint|draw|knit|garden|hike|travel|go|speak|study|attend|wear|grow|"
    "raise|keep|practice|practise|do|work out|exercise|meditate|dance|fish|hunt|camp|surf|ski|"
    "climb|teach|coach|manage|commute|walk|take|spend|visit|follow|support|avoid|love|like|enjoy"
)
_TRANSIENT_IS = re.compile(
    r"^(?:not sure|sorry|glad|happy|sure|afraid|excited|fine|good|great|okay|ok|here|back|done|ready|"
    r"tired|curious|so|just|also|still|going|looking|thinking|trying|wondering|planning a|about|"
    r"on my way|in|at|on|with|off|out|up|down|home|busy|free|late|early|new to|aware|able|"
    r"interested to|hoping|asking|writing|taking|preparing|doing|having|getting|"
    r"making|reading|watching|leaving|coming|staying|moving|heading|flying|starting)\b",
    re.IGNORECASE,
)
_AGE = re.compile(r"^(\d{1,3})(?:\s*(?:years? old|yrs? old|y/?o))?(?=\s+(?:and|but|so|now|too)\b|$)", re.I)
_INTENSIFIER = re.compile(r"^(?:so|very|pretty|quite|super|extremely|too|rather|fairly)\s+", re.I)
_SCHOOL = re.compile(r"^(?:still )?in (?:high school|school|college|university|grad school|graduate school|med school|law school)\b", re.I)
_STATUS = re.compile(r"^(married|single|divorced|engaged|widowed|separated|in a relationship)\b", re.I)
_MAX_CLAUSE_WORDS = 30


@dataclass(frozen=True)
class Statement:
    """One first-person statement recognised in a clause.

    Attributes:
        text: the fact in the third person ("Loves hiking").
        category: preference, attribute, relationship, habit, style, goal, health, work, location.
        subject: the supersession key.
        polarity: 1 or -1.
        confidence: how sure the rule is (0..1).
        quote: the user's own words it was read from (the clause).
    """

    text: str
    category: str
    subject: str
    polarity: int
    confidence: float
    quote: str = ""


def _object(text: str) -> str:
    return strip_trailing_time(text.strip().strip("\"'").rstrip(".!,;"))


def _style_or(category: str, clause: str) -> str:
    return "style" if STYLE_WORDS.search(clause.lower()) else category


def _is_statement(rest: str, negative: bool, clause: str) -> Statement | None:
    """Rules for "I'm X" / "I'm not X"."""
    obj = _object(_INTENSIFIER.sub("", re.sub(rf"^{ADV}", "", rest, flags=re.I)))
    pol = -1 if negative else 1
    low = obj.lower()
    if _SCHOOL.match(low):
        return Statement(render(clause), "attribute", "education", pol, 0.8)
    if age := _AGE.match(low):
        return Statement(f"Is {age.group(0)}", "attribute", "age", pol, 0.9)
    if not obj or _TRANSIENT_IS.match(low) or _PRONOUN_OBJECT.match(low):
        return None
    text = render(clause)
    if m := re.match(r"^(?:severely |very |deathly |highly |mildly )?allergic to (.+)", low):
        return Statement(text, "health", f"allergy:{phrase_key(m.group(1), 2)}", pol, 0.95)
    if m := re.match(r"^([\w-]+) intolerant\b", low):
        return Statement(text, "health", f"intolerance:{stem(m.group(1))}", pol, 0.9)
    if m := re.match(r"^training (?:for|to) (.+)", low):
        return Statement(text, "goal", "goal:training", pol, 0.85)
    if m := re.match(r"^working on (.+)", low):
        return Statement(text, "work", f"project:{phrase_key(m.group(1))}", pol, 0.6)
    if m := re.match(r"^(?:learning|studying) (.+)", low):
        return Statement(text, "goal", f"learning:{phrase_key(m.group(1))}", pol, 0.7)
    if re.match(r"^(?:planning|saving up|saving) (?:to|for) ", low):
        return Statement(text, "goal", f"goal:{phrase_key(low.split(' ', 2)[-1])}", pol, 0.6)
    if m := re.match(r"^(?:originally )?from (.+)", low):
        return Statement(text, "location", "origin", pol, 0.85)
    if re.match(r"^(?:based|living) in ", low):
        return Statement(text, "location", "residence", pol, 0.85)
    if m := re.match(r"^(?:a |an )?(?:big |huge |massive |great )?fan of (.+)", low):
        return Statement(text, _style_or("preference", low), f"likes:{phrase_key(m.group(1))}", pol, 0.8)
    if m := re.match(r"^(?:really |very )?(?:into|passionate about|obsessed with|interested in) (.+)", low):
        return Statement(text, "preference", f"likes:{phrase_key(m.group(1))}", pol, 0.7)
    if _STATUS.match(low):
        return Statement(text, "relationship", "relationship_status", pol, 0.85)
    domain = domain_of(low, frozenset({"diet", "alcohol", "smoking"}))
    if domain and len(low.split()) <= 8:
        return Statement(text, "attribute" if domain == "diet" else "habit", domain, pol, 0.9)
    if is_job(low):
        return Statement(text, "work", "occupation", pol, 0.85)
    head = head_noun(low)
    if head in FAMILY_WORDS:
        return Statement(text, "relationship", f"is:{stem(head)}", pol, 0.75)
    words = low.split()
    if len(words) <= 5 and not words[0].endswith("ing"):
        return Statement(text, "attribute", f"is:{phrase_key(low)}", pol, 0.55)
    return None


def _like_statement(verb: str, obj: str, negative: bool, clause: str) -> Statement | None:
    obj = _object(obj)
    if not obj or _PRONOUN_OBJECT.match(obj):
        return None
    main = re.split(r"\s+(?:over|to|rather than|instead of|more than)\s+", obj, maxsplit=1)[0]
    main = re.sub(r"^to\s+", "", main, flags=re.I)
    if verb.startswith("prefer"):
        main = re.sub(r"^(?:to\s+)", "", obj.split(" over ")[0].split(" rather than ")[0], flags=re.I)
    subject = domain_of(main, PREFERENCE_DOMAINS) or f"likes:{phrase_key(main)}"
    if subject == "likes:":
        return None
    confidence = 0.6 if verb.endswith("ed") else (0.85 if verb.startswith("prefer") else 0.8)
    return Statement(render(clause), _style_or("preference", clause), subject, -1 if negative else 1, confidence)


def _statement(clause: str) -> Statement | None:
    """Match one canonical clause against the rules; the first rule that fits wins."""
    low = clause.lower()
    if not re.match(r"^(?:i\b|i'm\b|my\b)", low):
        for pattern, polarity in OBJECT_FIRST:
            if m := pattern.match(clause):
                obj = _object(m.group(1))
                if _PRONOUN_OBJECT.match(obj) or not phrase_key(obj):
                    return None
                verb = "Likes" if polarity > 0 else "Dislikes"
                return Statement(f"{verb} {obj}", "preference", f"likes:{phrase_key(obj)}", polarity, 0.7)
        return None
    if _SKIP.match(low):
        return None
    if len(low.split()) > _MAX_CLAUSE_WORDS:
        return None
    text = render(clause)
    # my favorite X is Y / my X is Y
    if m := re.match(r"^my (?:absolute |all[- ]time |current )?favorite ([\w' -]{1,30}?) (?:is|are|was|would be) (.+)", low):
        what, value = m.group(1), _object(m.group(2))
        subject = domain_of(value) or domain_of(what, PREFERENCE_DOMAINS) or f"favorite:{phrase_key(what)}"
        return Statement(text, "preference", subject, 1, 0.9)
    if m := re.match(r"^my ([\w'-]+) ((?!is\b|are\b|was\b|were\b|has\b|had\b)[a-z]+s)\b", low):
        if m.group(1) in FAMILY_WORDS:
            return Statement(text, "relationship", f"my:{phrase_key(m.group(1))}", 1, 0.6)
    if m := re.match(r"^my ((?:[\w'-]+ ){0,2}?[\w'-]+) (?:is|are|was|were)(?: (?:to|a|an|the))? (.+)", low):
        what = m.group(1)
        if what.split()[-1] in FAMILY_WORDS:
            return Statement(text, "relationship", f"my:{phrase_key(what)}", 1, 0.75)
        if what == "name":
            return Statement(text, "attribute", "name", 1, 0.9)
        if what in ("goal", "dream", "plan", "aim"):
            return Statement(text, "goal", f"goal:{phrase_key(m.group(2))}", 1, 0.7)
        if what in ("hobby", "hobbies", "passion"):
            return Statement(text, "preference", f"likes:{phrase_key(m.group(2))}", 1, 0.75)
        if what in ("job", "occupation", "profession"):
            return Statement(text, "work", "occupation", 1, 0.85)
        return Statement(text, "attribute", f"my:{phrase_key(what)}", 1, 0.55)
    if m := re.match(r"^i'm (not |no longer )?(.+)", low):
        return _is_statement(clause[len(clause) - len(m.group(2)):], bool(m.group(1)), clause)
    if m := re.match(rf"^i {ADV}(?:have|has) (?:a |an )?(?:severe |bad |mild )?([\w -]+?) allerg(?:y|ies)\b", low):
        return Statement(text, "health", f"allergy:{phrase_key(m.group(1), 2)}", 1, 0.9)
    # changes: switched / moved / started / stopped / no longer
    if m := re.match(rf"^i {ADV}(?:switched|changed|moved over|converted|migrated)(?: from (.+?))? (?:to|over to) (.+)", low):
        old, new = m.group(1) or "", _object(m.group(2))
        subject = domain_of(new) or domain_of(old) or f"{stem('use')}:{phrase_key(old or new)}"
        return Statement(text, "habit", subject, 1, 0.85)
    if m := re.match(rf"^i {ADV}(?:moved|relocated) to (.+)", low):
        return Statement(text, "location", "residence", 1, 0.85)
    if m := re.match(rf"^i {ADV}(?:started|began|took up|picked up|got into|have started) (.+)", low):
        obj = _object(m.group(1))
        subject = domain_of(obj) or f"activity:{phrase_key(obj, 2)}"
        return Statement(text, _style_or("habit", obj), subject, 1, 0.8)
    if m := re.match(r"^i (?:recently |just |finally )?(?:stopped|quit|gave up|have stopped|no longer) (.+)", low):
        obj = _object(m.group(1))
        subject = domain_of(obj) or f"activity:{phrase_key(obj, 2)}"
        return Statement(text, "habit", subject, -1, 0.8)
    # work and place
    if m := re.match(rf"^i {ADV}work (as|at|for|in|on) (.+)", low):
        kind, obj = m.group(1), m.group(2)
        if kind == "as":
            return Statement(text, "work", "occupation", 1, 0.9)
        if kind in ("at", "for"):
            return Statement(text, "work", "employer", 1, 0.85)
        return Statement(text, "work", f"works_in:{phrase_key(obj)}", 1, 0.7)
    if m := re.match(rf"^i {ADV}live (in|on|near|at|with) (.+)", low):
        if m.group(1) == "with":
            return Statement(text, "relationship", "lives_with", 1, 0.75)
        return Statement(text, "location", "residence", 1, 0.85)
    if re.match(rf"^i {ADV}live (?!to\b|for\b)", low):
        return Statement(text, "location", "residence", 1, 0.7)
    if re.match(rf"^i {ADV}grew up in ", low):
        return Statement(text, "location", "origin", 1, 0.8)
    # preferences
    if m := re.match(rf"^i {ADV}(hate|dislike|detest|loathe|can't stand|don't like|don't enjoy|don't love|don't care for) (.+)", low):
        return _like_statement(m.group(1), clause[len(clause) - len(m.group(2)):], True, clause)
    if m := re.match(rf"^i {ADV}(love|loved|adore|like|liked|enjoy|enjoyed|prefer|preferred) (.+)", low):
        return _like_statement(m.group(1), clause[len(clause) - len(m.group(2)):], False, clause)
    # possessions and relations
    if m := re.match(rf"^i {ADV}(?:used to|use to) (.+)", low):
        obj = _object(m.group(1))
        return Statement(text, _style_or("habit", obj), f"used_to:{phrase_key(obj)}", 1, 0.6)
    if m := re.match(r"^i(?:'d| would) (?:much )?rather (.+)", low):
        return _like_statement("prefer", clause[len(clause) - len(m.group(1)):], False, clause)
    if m := re.match(rf"^i {ADV}(don't )?have (?:a |an |one |two |three |four |five |\d+ |several |many |some )?(.+)", low):
        obj = _object(m.group(2))
        if not obj or _PRONOUN_OBJECT.match(obj):
            return None
        head = head_noun(obj)
        category = "relationship" if head in FAMILY_WORDS else "attribute"
        return Statement(text, category, f"has:{stem(head)}", -1 if m.group(1) else 1, 0.7)
    # goals
    if m := re.match(r"^i (?:want to|hope to|plan to|intend to|dream of|aim to|would love to) (.+)", low):
        return Statement(text, "goal", f"goal:{phrase_key(m.group(1))}", 1, 0.65)
    # habits and negated habits
    if m := re.match(rf"^i (don't|never|rarely) ({_HABIT_VERBS})\b ?(.*)", low):
        obj = _object(m.group(3))
        subject = domain_of(f"{m.group(2)} {obj}") or f"{stem(m.group(2))}:{phrase_key(obj)}"
        return Statement(text, _style_or("habit", low), subject, -1, 0.75)
    if m := re.match(rf"^i ({ADV})({_HABIT_VERBS})\b ?(.*)", low):
        adverbs, verb, obj = m.group(1), m.group(2), _object(m.group(3))
        if verb in ("take", "spend", "go", "visit", "do") and not any(a in adverbs for a in _HABIT_ADVERBS):
            return None  # "I take the train tomorrow": an event, not a habit
        subject = domain_of(f"{verb} {obj}", frozenset({"diet", "editor", "alcohol", "smoking"}))
        subject = subject or f"{stem(verb)}:{phrase_key(obj)}"
        confidence = 0.7 if any(a in adverbs for a in _HABIT_ADVERBS) else 0.6
        return Statement(text, _style_or("habit", low), subject, 1, confidence)
    return None


def extract_statements(text: str) -> list[Statement]:
    """Every first-person fact stated in ``text``; one per subject, the last one winning.

    Within one text a later statement on the same subject is the user's latest
    word ("I no longer use Neovim, I switched to Helix"), so only it is kept.
    """
    found: dict[str, Statement] = {}
    for sentence in split_sentences(text.replace("\u2019", "'")):
        for clause, head in clauses(sentence):
            statement = _statement(head)
            if statement is None:
                continue
            statement = replace(statement, quote=clause)
            if clause != head:
                statement = replace(statement, text=render(clause))
            if len(statement.text) > 3:
                found.pop(statement.subject, None)  # re-insert: keeps "last wins" order
                found[statement.subject] = statement
    return list(found.values())


_OTHERS = frozenset({"assistant", "system", "tool", "function", "developer", "ai", "bot", "model"})


class RuleExtractor:
    """Deterministic persona extraction from first-person statements (no LLM).

    Attributes:
        name: ``"rules"``, recorded as the facts' generator.
    """

    name = "rules"

    def extract(self, chunks: Sequence[Chunk], current: Iterable[Fact] = ()) -> list[FactCandidate]:
        """Candidates from the user's own chunks (assistant and system turns are skipped).

        Args:
            chunks: new chunks, in ingestion order.
            current: the user's current facts (unused: rules need no context).

        Returns:
            One candidate per statement, with the chunk as source and its timestamp.
        """
        out: list[FactCandidate] = []
        for chunk in chunks:
            if chunk.kind == "message" and (chunk.role or "user").lower() in _OTHERS:
                continue
            for st in extract_statements(chunk.text):
                out.append(FactCandidate(
                    text=st.text, category=st.category, subject=st.subject, polarity=st.polarity,
                    confidence=st.confidence, sources=(chunk.id,), valid_from=chunk.timestamp,
                    quote=st.quote,
                ))
        return out
