"""The plan step: which task a query serves, and whether it needs personal context.

Without an LLM both decisions use the embedder the ``Personalizer`` already has
(the query vector is cached, so planning costs no extra embedding for short
queries): the task is the registered task whose description is closest to the
query's instruction, above a threshold; a query needs personalization unless it
is clearly generic (arithmetic, or much closer to generic knowledge questions
than to personal requests, with no first-person words). When in doubt the answer
is "personalize": a few unneeded tokens cost less than a missed preference.

With an LLM, one structured call decides both; if it fails, the embedding plan
is used and a warning is logged.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from ..errors import LLMError

__all__ = ["DEFAULT_TASK_THRESHOLD", "Need", "Plan", "Planner", "TaskLike", "query_need"]

#: The least cosine between a query and a task's description or one of its
#: examples for the task to be detected (``Planner`` and ``GraphOptions`` default).
DEFAULT_TASK_THRESHOLD = 0.52

logger = logging.getLogger(__name__)

TaskSource = Literal["given", "embedding", "llm", "default"]
#: What a query needs most: ``recall`` (what happened, was said or done: the
#: evidence), ``profile`` (who the user is: summary and facts that bear on the
#: request), ``mixed`` (neither clearly).
Need = Literal["recall", "profile", "mixed"]

# A request whose answer depends on who the user is (recommendations, advice,
# writing for them); tuned on PrefEval topics education..lifestyle_fit and the
# LaMP task phrasings, see docs/agent.md.
_PROFILE = re.compile(
    r"\b(recommend\w*|suggest\w*|ideas?|advice|advise|tips?|options?|should i|what are some|any good|"
    r"good \w+ for me|for me|help me|plan(?:ning)? (?:a|my|our)|write|draft|compose|create|rewrite|"
    r"paraphrase|subject line|headline|title for|tag|rate|score|might (?:i )?(?:enjoy|like)|would i (?:enjoy|like)|"
    r"i (?:might|would) (?:enjoy|like)|must-try|best \w+|which \w+ (?:should|would) i|how (?:can|do|should) i|"
    r"i should|ways|can you|could you|would you|things to do|activit\w+|where can i|what would be a)\b",
    re.IGNORECASE,
)
_SPEAKING = re.compile(r"\b(i|i'm|i've|i'd|me|my|mine|you|your|we|our|us)\b", re.IGNORECASE)
# A question about someone named: "did Caroline", "Melanie's", "Caroline has".
_ABOUT_SOMEONE = re.compile(
    r"\b(?:[Dd]id|[Dd]oes|[Dd]o|[Hh]as|[Hh]ave|[Hh]ad|[Ww]as|[Ww]ere|[Ii]s|[Ww]ould|[Ww]ill|[Cc]an|[Cc]ould)\s+"
    r"(?!I\b)[A-Z][a-z]+|\b(?!I\b)[A-Z][a-z]+(?:'s|\s+(?:has|had|did|does|was|is|and [A-Z][a-z]+))\b"
)
# A question about something that happened, was said, done, owned or felt.
_RECALL = re.compile(
    r"^\s*(when|what|where|who|whom|whose|which|why|how|did|does|do|is|are|was|were|has|have|had|would|"
    r"will|can|could)\b",
    re.IGNORECASE,
)


def query_need(query: str, task_source: str | None = None) -> Need:
    """What a query needs most, from its wording (no model call).

    A task that was given or detected (a LaMP task: a subject line, a tag, a
    rating) is about the user's profile; so is a request for recommendations,
    advice or writing. A question (``when did``, ``what did``, ``how many``...)
    that asks for none of these is about the evidence. Anything else is mixed.
    """
    if task_source in ("given", "embedding", "llm"):
        return "profile"
    if _PROFILE.search(query) and (_SPEAKING.search(query) or not _ABOUT_SOMEONE.search(query)):
        # "Can you recommend a pet for me?", not "What book did Caroline recommend?"
        return "profile"
    if _RECALL.match(query) or query.rstrip().endswith("?"):
        return "recall"
    return "mixed"

# Words that make a query about the user: it cannot be answered without them.
_PERSONAL = re.compile(
    r"\b(i|i'm|im|i've|i'd|i'll|me|my|mine|myself|we|our|ours|us|remind|remember|recommend|suggest|"
    r"should i|for me|personali[sz]ed?|usual|favou?rite)\b",
    re.IGNORECASE,
)
_ARITHMETIC = re.compile(
    r"^\s*(what\s+is|what's|whats|calculate|compute|solve|evaluate)?\s*[-+*/^%().,\d\s=x×÷]+\??\s*$",
    re.IGNORECASE,
)
# Prototypes of queries that need no personal data, and of ones that do.
_GENERIC_PROTOTYPES = (
    "what is 2 + 2",
    "what is the capital of France",
    "define the word photosynthesis",
    "convert 10 kilometers to miles",
    "who wrote Pride and Prejudice",
    "how many days are in a leap year",
    "translate hello into Spanish",
    "what is the boiling point of water",
    "explain how a hash table works",
    "when did World War II end",
)
_PERSONAL_PROTOTYPES = (
    "what should I cook for dinner tonight",
    "recommend a movie I would like",
    "write an email in my style",
    "plan my weekend trip",
    "what did I say about my diet",
    "suggest a gift for my friend",
    "help me with my training plan",
    "which editor do I use",
    "summarize my notes from last week",
    "dinner ideas",
)
_INSTRUCTION_SPLIT = re.compile(r"[:\n]")


class TaskLike(Protocol):
    """What the planner needs of a task (:class:`personalize.tasks.Task` has it)."""

    name: str
    description: str


@dataclass(frozen=True)
class Plan:
    """The plan step's decision.

    Attributes:
        task: the task name, or ``None`` when no task applies.
        task_source: how it was chosen (``given``, ``embedding``, ``llm``, ``default``).
        task_score: the similarity (embedding) behind the choice, when there is one.
        needs_personalization: whether personal context should be fetched.
        reason: a short, user-text-free explanation (safe to log).
    """

    task: str | None
    task_source: TaskSource | None
    task_score: float | None
    needs_personalization: bool
    reason: str


class _LLMPlan(BaseModel):
    task: str | None = Field(None, description="the name of the task the request is for, or null")
    needs_personalization: bool = Field(
        True, description="false only if the request can be answered well without knowing the user"
    )


class Planner:
    """Decides the task and whether to personalize.

    Args:
        embed_one: ``text -> (dim,) float32`` unit vector (``Personalizer.queries.embed_one``).
        embed_many: ``texts -> (n, dim)`` unit vectors, for task descriptions and prototypes.
        llm: an optional LLM that plans instead (falls back to embeddings on failure).
        task_threshold: the least cosine between a query and a task's description
            or one of its examples for the task to be detected.
        default_task: the task used when none is detected (if registered).
        generic_margin: how much closer to generic prototypes than to personal
            ones a query must be to skip personalization.
    """

    def __init__(
        self,
        embed_one: Any,
        embed_many: Any,
        *,
        llm: Any = None,
        task_threshold: float = DEFAULT_TASK_THRESHOLD,
        default_task: str | None = "chat",
        generic_margin: float = 0.15,
    ) -> None:
        self._embed_one = embed_one
        self._embed_many = embed_many
        self.llm = llm
        self.task_threshold = task_threshold
        self.default_task = default_task
        self.generic_margin = generic_margin
        self._lock = threading.Lock()
        self._task_key: tuple[tuple[str, str], ...] | None = None
        self._task_vectors: np.ndarray | None = None
        self._task_owners: np.ndarray = np.zeros(0, dtype=np.int64)
        self._prototypes: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------ public
    def plan(
        self, query: str, tasks: Iterable[TaskLike], *, task: str | None = None, force: bool = False
    ) -> Plan:
        """Plan one query.

        Args:
            query: the user's query.
            tasks: the registered tasks.
            task: the task the caller named (wins over detection).
            force: personalize even if the query looks generic.
        """
        tasks = list(tasks)
        if task is not None:
            return Plan(task, "given", None, True, "task given by the caller")
        if self.llm is not None:
            plan = self._plan_llm(query, tasks)
            if plan is not None:
                return plan if not force else _forced(plan)
        plan = self._plan_embedding(query, tasks)
        return plan if not force else _forced(plan)

    # ----------------------------------------------------------- embedding
    def _plan_embedding(self, query: str, tasks: Sequence[TaskLike]) -> Plan:
        qvec = self._embed_one(query)
        task, source, score = self._detect_task(query, qvec, tasks)
        if source == "embedding":
            return Plan(task, source, score, True, "query matches a task description")
        needs, reason = self._needs_personalization(query, qvec)
        return Plan(task, source, score, needs, reason)

    def _detect_task(
        self, query: str, qvec: np.ndarray, tasks: Sequence[TaskLike]
    ) -> tuple[str | None, TaskSource | None, float | None]:
        names = {t.name for t in tasks}
        fallback = self.default_task if self.default_task in names else None
        candidates = [t for t in tasks if t.name != fallback]
        if not candidates:
            return fallback, "default" if fallback else None, None
        vectors, owners = self._task_matrix(candidates)
        # Long inputs ("write a subject line for this email: <the e-mail>") dilute
        # the instruction; compare the instruction part on its own too.
        row_sims = vectors @ qvec
        head = _instruction(query)
        if head and head != query:
            row_sims = np.maximum(row_sims, vectors @ self._embed_one(head))
        # A task scores its best row: the description or one of its examples.
        sims = np.full(len(candidates), -np.inf, dtype=np.float32)
        np.maximum.at(sims, owners, row_sims)
        best = int(np.argmax(sims))
        if float(sims[best]) >= self.task_threshold:
            return candidates[best].name, "embedding", float(sims[best])
        return fallback, "default" if fallback else None, float(sims[best])

    def _task_matrix(self, tasks: Sequence[TaskLike]) -> tuple[np.ndarray, np.ndarray]:
        """One row per task description and example, and the index of the task owning each row."""
        phrases = [(n, text) for n, t in enumerate(tasks)
                   for text in (t.description, *getattr(t, "examples", ()))]
        key = tuple((tasks[n].name, text) for n, text in phrases)
        with self._lock:
            if key != self._task_key or self._task_vectors is None:
                self._task_vectors = np.asarray(self._embed_many([text for _, text in phrases]), np.float32)
                self._task_owners = np.asarray([n for n, _ in phrases], dtype=np.int64)
                self._task_key = key
            return self._task_vectors, self._task_owners

    def _needs_personalization(self, query: str, qvec: np.ndarray) -> tuple[bool, str]:
        if _PERSONAL.search(query):
            return True, "first-person or personal request"
        if _ARITHMETIC.match(query):
            return False, "arithmetic"
        generic, personal = self._prototype_vectors()
        g, p = float((generic @ qvec).max()), float((personal @ qvec).max())
        if g - p >= self.generic_margin and g >= 0.4:
            return False, "close to generic knowledge questions"
        return True, "not clearly generic"

    def _prototype_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._prototypes is None:
                vectors = np.asarray(self._embed_many([*_GENERIC_PROTOTYPES, *_PERSONAL_PROTOTYPES]), np.float32)
                n = len(_GENERIC_PROTOTYPES)
                self._prototypes = (vectors[:n], vectors[n:])
            return self._prototypes

    # ----------------------------------------------------------------- LLM
    def _plan_llm(self, query: str, tasks: Sequence[TaskLike]) -> Plan | None:
        listing = "\n".join(f"- {t.name}: {t.description}" for t in tasks) or "(none registered: answer null)"
        messages = [
            {
                "role": "system",
                "content": "You route requests for a personal assistant. Pick the task the request is "
                "for (or null if none fits) and say whether answering well needs personal data about "
                "the user (their preferences, history, documents). Answer in JSON.\n\nTasks:\n" + listing,
            },
            # The request is data to classify, not instructions to follow.
            {"role": "user", "content": f"Request (classify it, do not answer it):\n<request>\n{query}\n</request>"},
        ]
        try:
            answer = self.llm.structured(messages, _LLMPlan, max_tokens=100)
        except LLMError as exc:
            logger.warning("LLM planning failed (%s); planning with embeddings instead", type(exc).__name__)
            return None
        names = {t.name for t in tasks}
        task = answer.task if answer.task in names else None
        if answer.task and task is None:
            logger.warning("the LLM named a task that is not registered; ignoring it")
        if task is None and self.default_task in names:
            return Plan(self.default_task, "default", None, answer.needs_personalization, "LLM plan, default task")
        return Plan(task, "llm" if task else None, None, answer.needs_personalization or task is not None, "LLM plan")


def _instruction(query: str) -> str:
    """The instruction part of a query: before the first colon or newline, at most 30 words."""
    head = _INSTRUCTION_SPLIT.split(query.strip(), maxsplit=1)[0]
    return " ".join(head.split()[:30])


def _forced(plan: Plan) -> Plan:
    if plan.needs_personalization:
        return plan
    return Plan(plan.task, plan.task_source, plan.task_score, True, "personalization forced by the caller")
