"""Loaders for the evaluation datasets in ``../shared/datasets`` (never copied into the repo).

Plain Python (stdlib only), so benchmarks and optional tests can read the public research data
without the library under test. Every loader takes an optional ``root``; by default it is
:func:`datasets_root`, which returns ``None`` when the datasets are absent so callers can
``pytest.skip`` cleanly.

Datasets and the gotchas handled here (see ``../shared/datasets/README.md``):

- LoCoMo: sessions are ordered numerically (``session_10`` after ``session_9``); some
  ``session_N_date_time`` keys have no session; evidence strings can pack several ids
  (``"D8:6; D9:17"``) and a few ids do not exist (``"D"``, ``"D:11:26"``, ``"D10:19"``): they are
  dropped and counted. Category 5 (adversarial) has ``adversarial_answer`` and, but for two
  yes/no questions, no ``answer``. Two category-3 questions have no evidence at all.
  The dataset's own ``observation`` / ``session_summary`` / ``event_summary`` are gold-linked and
  deliberately not exposed.
- PrefEval: topics hold 31 to 62 items each (not 50); the three forms of a topic are not aligned
  item by item, so each form is loaded on its own.
- MSC persona summary: the per-utterance gold fact is the annotator's ``problem_data.persona``;
  the derived ``persona_text`` splits sentences on abbreviations ("Dr.", "U.S.") and reorders them,
  so it is only the fallback.
- Synthetic-Persona-Chat: turns are ``User 1:`` / ``User 2:`` lines, sometimes wrapped in markdown
  asterisks; unprefixed lines continue the previous turn (recipes, stage directions).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = [
    "LOCOMO_SPLITS",
    "LocomoConversation",
    "LocomoQA",
    "LocomoTurn",
    "MscEpisode",
    "MscTurn",
    "PrefevalItem",
    "SpcConversation",
    "SpcTurn",
    "datasets_root",
    "load_locomo",
    "load_msc_personasummary",
    "load_prefeval",
    "load_prefeval_filler",
    "load_spc",
    "prefeval_split",
    "prefeval_topics",
]

PrefevalForm = Literal["explicit", "choice", "persona"]

_PREFEVAL_DIRS: dict[str, str] = {
    "explicit": "explicit_preference",
    "choice": "implicit_preference/choice-based",
    "persona": "implicit_preference/persona-driven",
}
_SESSION_KEY = re.compile(r"session_(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,]")
# "User 1: hi", "*User 1:* hi", "* User 2: hello *"
_SPC_TURN = re.compile(r"^[\s*]*User\s*([12])[\s*]*:[\s*]*(.*?)[\s*]*$")
_ONLY_DECORATION = re.compile(r"^[\s*_=#-]*$")


def datasets_root() -> Path | None:
    """Return the evaluation datasets folder, or ``None`` when it is absent.

    ``$PERSONALIZE_DATASETS`` wins when set; otherwise ``<repo>/../shared/datasets``.
    """
    env = os.environ.get("PERSONALIZE_DATASETS")
    if env:
        path = Path(env).expanduser()
    else:
        path = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
    return path if path.is_dir() else None


def _root(root: Path | str | None) -> Path:
    resolved = Path(root) if root is not None else datasets_root()
    if resolved is None or not resolved.is_dir():
        raise FileNotFoundError(
            "evaluation datasets not found: set PERSONALIZE_DATASETS or place them in "
            "<repo>/../shared/datasets"
        )
    return resolved


# --------------------------------------------------------------------------------------- LoCoMo


@dataclass(frozen=True)
class LocomoTurn:
    """One utterance of a LoCoMo conversation.

    Attributes:
        dia_id: Turn id as used by QA evidence, e.g. ``"D3:1"``.
        session: 1-based session number.
        speaker: Speaker name.
        text: Utterance text (without the image caption).
        date: The session's date/time string (``"1:56 pm on 8 May, 2023"``), if given.
        blip_caption: Caption of the image the speaker shared in this turn, if any.
    """

    dia_id: str
    session: int
    speaker: str
    text: str
    date: str | None = None
    blip_caption: str | None = None


@dataclass(frozen=True)
class LocomoQA:
    """One LoCoMo question.

    Attributes:
        question: The question.
        answer: Gold answer as text (bare numbers in the JSON become strings); ``None`` when the
            file gives none, which is the case for category 5 (adversarial: the right answer is
            that the conversation does not say) except two yes/no questions.
        evidence: Turn ids holding the answer; only ids that exist among the turns.
        category: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial.
        adversarial_answer: The trap answer of a category-5 question, else ``None``.
    """

    question: str
    answer: str | None
    evidence: tuple[str, ...]
    category: int
    adversarial_answer: str | None = None


@dataclass(frozen=True)
class LocomoConversation:
    """One long two-speaker conversation with its QA.

    Attributes:
        sample_id: e.g. ``"conv-26"``.
        speakers: ``(speaker_a, speaker_b)``.
        turns: Every turn, sessions in numeric order, turns in file order.
        qa: The questions, in file order.
        dropped_evidence: How many evidence ids were dropped because no turn has them.
    """

    sample_id: str
    speakers: tuple[str, str]
    turns: tuple[LocomoTurn, ...]
    qa: tuple[LocomoQA, ...]
    dropped_evidence: int = 0
    _by_id: dict[str, LocomoTurn] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the lookup table is derived, so set it once here.
        object.__setattr__(self, "_by_id", {t.dia_id: t for t in self.turns})

    def turn(self, dia_id: str) -> LocomoTurn:
        """Return the turn with id ``dia_id`` (``KeyError`` if none)."""
        return self._by_id[dia_id]

    @property
    def num_sessions(self) -> int:
        """Number of sessions that have turns."""
        return len({t.session for t in self.turns})


def _answer_text(value: object) -> str | None:
    # Some answers are bare ints in the JSON (2022).
    return None if value is None else str(value)


def load_locomo(root: Path | str | None = None) -> list[LocomoConversation]:
    """Load ``locomo/locomo_dev.json``.

    Args:
        root: Datasets folder; defaults to :func:`datasets_root`.

    Returns:
        The conversations in file order.
    """
    data = json.loads((_root(root) / "locomo" / "locomo_dev.json").read_text(encoding="utf-8"))
    conversations = []
    for sample in data:
        conv = sample["conversation"]
        sessions = sorted(
            int(m.group(1)) for key in conv if (m := _SESSION_KEY.fullmatch(key))
        )
        turns: list[LocomoTurn] = []
        for number in sessions:
            date = conv.get(f"session_{number}_date_time")
            for raw in conv[f"session_{number}"]:
                turns.append(
                    LocomoTurn(
                        dia_id=raw["dia_id"].strip(),
                        session=number,
                        speaker=raw["speaker"],
                        text=raw["text"],
                        date=date,
                        blip_caption=raw.get("blip_caption") or None,
                    )
                )
        by_id = {t.dia_id: t for t in turns}
        dropped = 0
        qa: list[LocomoQA] = []
        for raw in sample["qa"]:
            evidence: list[str] = []
            for item in raw.get("evidence") or ():
                for part in _EVIDENCE_SPLIT.split(str(item)):
                    part = part.strip()
                    if not part:
                        continue
                    if part in by_id:
                        if part not in evidence:
                            evidence.append(part)
                    else:
                        dropped += 1
            qa.append(
                LocomoQA(
                    question=raw["question"],
                    answer=_answer_text(raw.get("answer")),
                    evidence=tuple(evidence),
                    category=int(raw["category"]),
                    adversarial_answer=_answer_text(raw.get("adversarial_answer")),
                )
            )
        conversations.append(
            LocomoConversation(
                sample_id=sample["sample_id"],
                speakers=(conv["speaker_a"], conv["speaker_b"]),
                turns=tuple(turns),
                qa=tuple(qa),
                dropped_evidence=dropped,
            )
        )
    return conversations


# ------------------------------------------------------------------------------------- PrefEval


@dataclass(frozen=True)
class PrefevalItem:
    """One PrefEval preference with its later question.

    Attributes:
        topic: Topic name, e.g. ``"travel_restaurant"``.
        form: ``"explicit"``, ``"choice"`` or ``"persona"``.
        preference_messages: The user turn(s) that carry the preference: the stated preference
            (explicit), or the user turns of the conversation that reveal it (choice, persona).
        question: The later question whose answer should respect the preference.
        preference: The gold preference statement (also present for implicit forms: it is the
            label, never input for the system under test).
    """

    topic: str
    form: str
    preference_messages: tuple[str, ...]
    question: str
    preference: str | None


def prefeval_topics(root: Path | str | None = None) -> list[str]:
    """Return the PrefEval topics present (sorted), taken from the explicit-preference folder."""
    folder = _root(root) / "prefeval" / _PREFEVAL_DIRS["explicit"]
    return sorted(p.stem for p in folder.glob("*.json"))


#: Tuning and report splits of the development LoCoMo conversations: rules and
#: constants are chosen on "tune", figures are reported on "report" (and both).
LOCOMO_SPLITS: dict[str, tuple[str, ...]] = {"tune": ("conv-26", "conv-30"), "report": ("conv-41", "conv-42", "conv-43")}


def prefeval_split(split: str, root: Path | str | None = None) -> list[str]:
    """PrefEval topics of a split: ``"tune"`` the first half (sorted by name), ``"report"`` the rest."""
    topics = prefeval_topics(root)
    half = (len(topics) + 1) // 2
    if split == "tune":
        return topics[:half]
    if split == "report":
        return topics[half:]
    raise ValueError(f"unknown split {split!r}; expected 'tune' or 'report'")


def _user_turns(form: str, conversation: dict) -> tuple[str, ...]:
    if form == "choice":
        # {"query", "assistant_options", "user_selection", "assistant_acknowledgment"}
        return tuple(conversation[k] for k in ("query", "user_selection") if conversation.get(k))
    # persona: {"0": {"user", "assistant"}, "1": ...}; sort keys numerically.
    ordered = sorted(conversation.items(), key=lambda kv: int(kv[0]))
    return tuple(turn["user"] for _, turn in ordered if turn.get("user"))


def load_prefeval(
    form: PrefevalForm,
    topics: list[str] | None = None,
    root: Path | str | None = None,
) -> list[PrefevalItem]:
    """Load one PrefEval form.

    Args:
        form: ``"explicit"``, ``"choice"`` (implicit choice-based) or ``"persona"`` (implicit
            persona-driven).
        topics: Topics to load (default: all present), in the order given.
        root: Datasets folder; defaults to :func:`datasets_root`.

    Returns:
        The items, topic by topic, in file order.

    Raises:
        ValueError: Unknown form or topic.
    """
    if form not in _PREFEVAL_DIRS:
        raise ValueError(f"unknown PrefEval form {form!r}; expected one of {sorted(_PREFEVAL_DIRS)}")
    base = _root(root)
    available = prefeval_topics(base)
    wanted = available if topics is None else list(topics)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise ValueError(f"unknown PrefEval topic(s) {unknown}; available: {available}")
    folder = base / "prefeval" / _PREFEVAL_DIRS[form]
    items: list[PrefevalItem] = []
    for topic in wanted:
        for raw in json.loads((folder / f"{topic}.json").read_text(encoding="utf-8")):
            if form == "explicit":
                messages: tuple[str, ...] = (raw["preference"],)
            else:
                messages = _user_turns(form, raw["conversation"])
            items.append(
                PrefevalItem(
                    topic=topic,
                    form=form,
                    preference_messages=messages,
                    question=raw["question"],
                    preference=raw.get("preference"),
                )
            )
    return items


def load_prefeval_filler(
    roles: tuple[str, ...] = ("user",),
    root: Path | str | None = None,
) -> list[str]:
    """Load the filler messages of ``prefeval/filtered_inter_turns.json``.

    The file holds 24 unrelated conversations, 632 messages: 316 user and 316 assistant.

    Args:
        roles: Which sides to keep; ``("user", "assistant")`` gives all 632 messages in order.
        root: Datasets folder; defaults to :func:`datasets_root`.

    Returns:
        Message texts, conversation by conversation, in order (duplicates kept).
    """
    path = _root(root) / "prefeval" / "filtered_inter_turns.json"
    conversations = json.loads(path.read_text(encoding="utf-8"))
    return [
        message["content"]
        for conversation in conversations
        for message in conversation["conversation"]
        if message.get("role") in roles and message.get("content")
    ]


# ------------------------------------------------------------------------------------------ MSC


class MscTurn(NamedTuple):
    """One utterance of an MSC persona-summary episode.

    ``speaker`` is ``"bot_0"`` or ``"bot_1"``; ``gold_persona`` is the persona fact the utterance
    reveals (one or more sentences), or ``None``.
    """

    speaker: str
    text: str
    gold_persona: str | None


@dataclass(frozen=True)
class MscEpisode:
    """One MSC persona-summary episode (one session of a multi-session chat).

    Attributes:
        episode_id: ``initial_data_id`` (``"valid_0"``): the same id across sessions 1 to 4.
        turns: The utterances in order.
        init_personas: The two speakers' original PersonaChat persona sentences
            (``bot_0`` first).
    """

    episode_id: str
    turns: tuple[MscTurn, ...]
    init_personas: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


def _gold_persona(raw: dict) -> str | None:
    problem = raw.get("problem_data")
    if isinstance(problem, dict):
        persona = problem.get("persona")
        if isinstance(persona, str) and persona.strip():
            return " ".join(persona.split())
    text = raw.get("persona_text")
    if isinstance(text, str) and text.strip():
        return " ".join(text.split())
    return None


def load_msc_personasummary(session: int, root: Path | str | None = None) -> list[MscEpisode]:
    """Load ``msc/msc_personasummary/session_<session>/valid.txt`` (500 episodes).

    Args:
        session: 1 to 4.
        root: Datasets folder; defaults to :func:`datasets_root`.

    Raises:
        ValueError: ``session`` outside 1..4.
    """
    if session not in (1, 2, 3, 4):
        raise ValueError(f"MSC persona-summary sessions are 1 to 4, got {session!r}")
    path = _root(root) / "msc" / "msc_personasummary" / f"session_{session}" / "valid.txt"
    episodes = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            raw = json.loads(line)
            turns = tuple(
                MscTurn(speaker=t["id"], text=t["text"], gold_persona=_gold_persona(t))
                for t in raw["dialog"]
            )
            personas = (raw.get("init_personachat") or {}).get("init_personas") or [[], []]
            episodes.append(
                MscEpisode(
                    episode_id=str(raw.get("initial_data_id", "")),
                    turns=turns,
                    init_personas=(tuple(personas[0]), tuple(personas[1])),
                )
            )
    return episodes


# ------------------------------------------------------------------------ Synthetic-Persona-Chat


class SpcTurn(NamedTuple):
    """One utterance: ``speaker`` is ``"User 1"`` or ``"User 2"``."""

    speaker: str
    text: str


@dataclass(frozen=True)
class SpcConversation:
    """One Synthetic-Persona-Chat conversation.

    Attributes:
        index: Row number in the CSV (0-based); personas repeat across rows, so this is the id.
        user1_personas: User 1's persona sentences.
        user2_personas: User 2's persona sentences.
        turns: The utterances in order.
    """

    index: int
    user1_personas: tuple[str, ...]
    user2_personas: tuple[str, ...]
    turns: tuple[SpcTurn, ...]


def _personas(cell: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in cell.splitlines() if line.strip())


def _spc_turns(text: str) -> tuple[SpcTurn, ...]:
    turns: list[list[str]] = []
    for line in text.splitlines():
        match = _SPC_TURN.match(line)
        if match:
            turns.append([f"User {match.group(1)}", match.group(2)])
        elif turns and not _ONLY_DECORATION.match(line):
            # A multi-line utterance (a recipe, a stage direction): keep it with its turn.
            turns[-1][1] = f"{turns[-1][1]}\n{line.strip()}".strip()
    return tuple(SpcTurn(speaker, body) for speaker, body in turns if body.strip())


def load_spc(root: Path | str | None = None) -> list[SpcConversation]:
    """Load ``synthetic_persona_chat/Synthetic-Persona-Chat_valid.csv`` (1,000 conversations).

    Args:
        root: Datasets folder; defaults to :func:`datasets_root`.
    """
    path = _root(root) / "synthetic_persona_chat" / "Synthetic-Persona-Chat_valid.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        SpcConversation(
            index=i,
            user1_personas=_personas(row["user 1 personas"]),
            user2_personas=_personas(row["user 2 personas"]),
            turns=_spc_turns(row["Best Generated Conversation"]),
        )
        for i, row in enumerate(rows)
    ]
