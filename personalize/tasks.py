"""Tasks: what a personalized answer is *for*, and how a user's items serve it.

A :class:`Task` says how to render one profile item in a prompt (LaMP's per-task
item templates), how to derive the retrieval query from a task input (LaMP's
query extraction), what the offline summary should capture (its ``kind`` and
``summary_instruction``), and how to read labels, scores and outputs off a
user's items and off a model's answer.

Built in (:func:`default_tasks`): the public LaMP tasks — ``citation`` (LaMP-1),
``movie_tagging`` (LaMP-2), ``product_rating`` (LaMP-3), ``news_headline``
(LaMP-4), ``scholarly_title`` (LaMP-5), ``email_subject`` (LaMP-6) and
``tweet_paraphrase`` (LaMP-7) — and a general ``chat`` task. Each
``Personalizer`` holds its own :class:`TaskRegistry` (``p.tasks``), so
registering a task never leaks into another instance.

Example::

    from personalize.tasks import Task

    p.register_task(Task(
        name="recipe_suggestion",
        description="suggest a recipe the user will like",
        kind="topical",
        summary_instruction="Summarize the user's food preferences and favourite cuisines.",
    ))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError, NotFoundError

__all__ = ["TASK_KINDS", "Task", "TaskKind", "TaskRegistry", "default_tasks", "item_fields"]

TaskKind = Literal["classification", "rating", "generation", "topical", "chat"]
TASK_KINDS: tuple[str, ...] = ("classification", "rating", "generation", "topical", "chat")

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# "key: value; key: value" as the CSV loader renders a row without a text column.
_PAIR = re.compile(r"(?:^|;\s*)([A-Za-z_][\w .-]{0,40}?):\s*([^;]*)")
_QUOTED = re.compile(r'"([^"]+)"')
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

#: LaMP-2's closed tag vocabulary.
MOVIE_TAGS: tuple[str, ...] = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
    "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
    "violence", "true story",
)


class _Fields(dict):  # type: ignore[type-arg]
    """Template fields; a missing one raises so the caller can fall back."""

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def item_fields(chunk_text: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields of one profile item: its metadata, plus ``key: value`` pairs in its text.

    CSV rows without a text column are stored as ``"title: Arrival; tags: sci-fi"``;
    reading those pairs back lets a task find labels and scores in ordinary
    user files, not only in LaMP-shaped metadata.

    Args:
        chunk_text: the stored chunk text.
        metadata: the chunk's metadata.

    Returns:
        ``{"text": chunk_text, **pairs, **metadata}`` with lower-cased keys.
    """
    fields: dict[str, Any] = {"text": chunk_text}
    if ":" in chunk_text and ";" in chunk_text and "\n" not in chunk_text.strip():
        for key, value in _PAIR.findall(chunk_text):
            if value.strip():
                fields[key.strip().lower()] = value.strip()
    for key, value in (metadata or {}).items():
        if value is not None and value != "":
            fields[str(key).lower()] = value
    return fields


def _split_labels(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = re.split(r"[|,;]", str(value))
    return [p.strip().lower() for p in parts if p.strip()]


def _examples(name: str, examples: Any) -> tuple[str, ...]:
    """``examples`` as a tuple of non-empty strings (read once: a generator is fine)."""
    bad = ConfigError(f"task {name!r}: examples must be a sequence of non-empty strings")
    if isinstance(examples, str):
        raise bad
    try:
        out = tuple(examples)
    except TypeError:
        raise bad from None
    if not all(isinstance(e, str) and e.strip() for e in out):
        raise bad
    return out


@dataclass(frozen=True)
class Task:
    """One personalization task.

    Attributes:
        name: unique id (lower case, digits, ``_ . -``); used in CLI flags and storage.
        description: one line on what the task produces; also the "task relevance"
            query when choosing representative items for its summary.
        kind: what the offline summary captures: ``"classification"`` (label
            statistics), ``"rating"`` (typical scores), ``"generation"`` (style as a
            template), ``"topical"`` (interests) or ``"chat"`` (preferences and facts).
        summary_instruction: the instruction given to an LLM summarizer.
        item_template: renders one profile item; ``{field}`` names come from
            :func:`item_fields` (``{text}`` is the chunk text). If a field is missing
            the item falls back to ``fallback_template``.
        fallback_template: used when ``item_template`` names a missing field.
        query_markers: the retrieval query is the input text after the first of these
            markers found (case-insensitive), as LaMP extracts it; none found: the
            whole input.
        labels: the closed label set of a classification task (scored with
            accuracy and macro-F1), if any.
        label_keys: item fields holding the user's label(s) for this task.
        score_keys: item fields holding the user's score (rating tasks).
        score_range: the valid score range (rating tasks).
        output_keys: item fields holding what the user wrote for this task (a title,
            a subject); empty: the item text itself.
        join: how rendered items are joined in a prompt (LaMP: ``", and "``).
        prompt_template: the full prompt; ``{items}`` and ``{input}`` are filled in.
            ``{summary}`` is filled with the user's summary block (or nothing).
        examples: requests a user would type for this task ("suggest a title for my
            paper"). Task detection compares a query with the description and each
            example and keeps the best match, so phrasings far from the one-line
            description are still recognized.
        render: overrides :meth:`render_item` entirely when given.
        query: overrides :meth:`retrieval_query` entirely when given.
    """

    name: str
    description: str
    kind: TaskKind
    summary_instruction: str
    item_template: str = "{text}"
    fallback_template: str = "{text}"
    query_markers: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    label_keys: tuple[str, ...] = ()
    score_keys: tuple[str, ...] = ()
    score_range: tuple[float, float] = (1.0, 5.0)
    output_keys: tuple[str, ...] = ()
    join: str = "\n"
    prompt_template: str = "{summary}{items}\n\n{input}"
    examples: tuple[str, ...] = ()
    render: Callable[[str, Mapping[str, Any]], str] | None = None
    query: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"task name {self.name!r} is invalid: use 1-64 lower-case letters, digits and _ . -"
            )
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task kind must be one of {TASK_KINDS}, got {self.kind!r}")
        if not self.summary_instruction.strip():
            raise ConfigError(f"task {self.name!r} needs a summary_instruction")
        if self.score_range[0] >= self.score_range[1]:
            raise ConfigError(f"task {self.name!r}: score_range must be (low, high) with low < high")
        object.__setattr__(self, "examples", _examples(self.name, self.examples))  # frozen: lists in, tuples kept

    # ------------------------------------------------------------ profile items
    @property
    def metric(self) -> Literal["classification", "rating", "generation"]:
        """How predictions for this task are scored."""
        if self.kind == "rating":
            return "rating"
        if self.labels or self.kind == "classification":
            return "classification"
        return "generation"

    def render_item(self, chunk_text: str, metadata: Mapping[str, Any] | None = None) -> str:
        """One profile item as it appears in a prompt (LaMP's per-task template).

        Args:
            chunk_text: the stored text of the item.
            metadata: its metadata (LaMP fields such as ``title``, ``tag``, ``score``).

        Returns:
            The rendered item.
        """
        if self.render is not None:
            return self.render(chunk_text, metadata or {})
        fields = _Fields(item_fields(chunk_text, metadata))
        try:
            return self.item_template.format_map(fields).strip()
        except (KeyError, IndexError, ValueError):
            try:
                return self.fallback_template.format_map(fields).strip()
            except (KeyError, IndexError, ValueError):
                return chunk_text.strip()

    def retrieval_query(self, input_text: str) -> str:
        """The query that retrieves profile items for ``input_text``.

        LaMP strips the task instruction (``"Generate a headline for the following
        article: ..."`` retrieves with the article only).
        """
        if self.query is not None:
            return self.query(input_text)
        lowered = input_text.lower()
        best: int | None = None
        cut = 0
        for marker in self.query_markers:
            # The first occurrence: the instruction comes first, and the text after
            # it may itself contain the marker.
            at = lowered.find(marker.lower())
            if at >= 0 and (best is None or at < best):
                best, cut = at, at + len(marker)
        query = input_text[cut:] if best is not None else input_text
        return query.strip() or input_text.strip()

    def item_labels(self, chunk_text: str, metadata: Mapping[str, Any] | None = None) -> list[str]:
        """The user's label(s) on this item for this task (lower case); ``[]`` if none."""
        fields = item_fields(chunk_text, metadata)
        for key in self.label_keys:
            if key in fields:
                return _split_labels(fields[key])
        return []

    def item_score(self, chunk_text: str, metadata: Mapping[str, Any] | None = None) -> float | None:
        """The user's score on this item, if it has one within :attr:`score_range`."""
        fields = item_fields(chunk_text, metadata)
        for key in self.score_keys:
            if key in fields:
                found = _NUMBER.search(str(fields[key]))
                if found:
                    value = float(found.group())
                    low, high = self.score_range
                    if low <= value <= high:
                        return value
        return None

    def item_output(self, chunk_text: str, metadata: Mapping[str, Any] | None = None) -> str | None:
        """What the user wrote for this task on this item (a title, a subject), if known."""
        if not self.output_keys:
            return chunk_text.strip() or None
        fields = item_fields(chunk_text, metadata)
        for key in self.output_keys:
            value = fields.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None

    def applies_to(self, chunk_text: str, metadata: Mapping[str, Any] | None = None) -> bool:
        """Whether the item carries this task's signal (a label, a score or an output)."""
        if self.label_keys:
            return bool(self.item_labels(chunk_text, metadata))
        if self.kind == "rating":
            return self.item_score(chunk_text, metadata) is not None
        if self.output_keys:
            return self.item_output(chunk_text, metadata) is not None
        return True

    # ------------------------------------------------------------ predictions
    def build_prompt(self, input_text: str, items: Iterable[str], summary: str | None = None) -> str:
        """The prompt the method prescribes: summary, then rendered items, then the input."""
        rendered = [i for i in items if i]
        block = f"User summary:\n{summary.strip()}\n\n" if summary and summary.strip() else ""
        item_text = self.join.join(rendered)
        if not rendered:
            return f"{block}{input_text}".strip()
        return self.prompt_template.format(summary=block, items=item_text, input=input_text).strip()

    def parse_prediction(self, output: str) -> str:
        """A model answer normalized for scoring (a label, a score, or clean text)."""
        text = output.strip()
        if self.metric == "rating":
            found = _NUMBER.search(text)
            return found.group() if found else text
        if self.metric == "classification" and self.labels:
            lowered = text.lower()
            hits = [(lowered.find(label.lower()), -len(label), label) for label in self.labels
                    if label.lower() in lowered]
            return min(hits)[2] if hits else text
        return text.strip().strip('"').strip()


class TaskRegistry:
    """The tasks known to one ``Personalizer``.

    Args:
        tasks: the initial tasks (default: none; see :func:`default_tasks`).
    """

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            self.register(task)

    def register(self, task: Task, *, replace: bool = False) -> Task:
        """Add ``task``; a name already registered needs ``replace=True``."""
        if not isinstance(task, Task):
            raise ConfigError(f"expected a Task, got {type(task).__name__}")
        if task.name in self._tasks and not replace and self._tasks[task.name] != task:
            raise ConfigError(f"task {task.name!r} is already registered (pass replace=True)")
        self._tasks[task.name] = task
        return task

    def get(self, name: str | Task) -> Task:
        """The task called ``name`` (a ``Task`` is returned as is)."""
        if isinstance(name, Task):
            return name
        try:
            return self._tasks[name]
        except KeyError:
            raise NotFoundError(
                f"unknown task {name!r}; known tasks: {', '.join(self.names()) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        """Registered task names, in registration order."""
        return list(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __contains__(self, name: object) -> bool:
        return (name.name if isinstance(name, Task) else name) in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskRegistry({self.names()!r})"


def _citation_query(input_text: str) -> str:
    # LaMP-1 retrieves with the two candidate references (quoted strings 2 and 3).
    quoted = _QUOTED.findall(input_text)
    return " ".join(quoted[1:3]) if len(quoted) >= 3 else " ".join(quoted) or input_text


_GEN_STYLE = "Following the given patterns, "


def default_tasks() -> TaskRegistry:
    """A new registry holding the built-in tasks (LaMP 1-7 and ``chat``)."""
    return TaskRegistry([
        Task(
            name="citation",
            description="identify which of two papers an author would cite, from their research interests",
            kind="topical",
            summary_instruction=(
                "Write a short summary of this researcher's research interests and topics, "
                "based on the titles and abstracts of the papers they have written. "
                "Only output the summary."
            ),
            item_template='"{title}"',
            query=_citation_query,
            labels=("[1]", "[2]"),
            join=", and ",
            prompt_template="{summary}The author has written papers titled: {items}.\n\n{input}",
            examples=("which of these two papers would I cite?", "would I cite [1] or [2] in my paper?", "pick the reference I am more likely to cite"),
        ),
        Task(
            name="movie_tagging",
            description="choose the tag this user would give a movie",
            kind="classification",
            summary_instruction=(
                "Summarize how this user tags movies: their most common tags, with rough "
                "frequencies, and what kinds of movies get which tag. Only output the summary."
            ),
            item_template='the tag for the movie: "{description}" is "{tag}"',
            fallback_template='the tags for the movie: "{title}" are "{tags}"',
            query_markers=("description:",),
            labels=MOVIE_TAGS,
            label_keys=("tag", "tags", "label", "labels", "category"),
            join=", and ",
            prompt_template="{summary}{items}. {input}",
            examples=("which tag fits this movie?", "tag this movie: a crew of astronauts meets an alien", "what tag would I give this film?"),
        ),
        Task(
            name="product_rating",
            description="predict the score from 1 to 5 this user gives to a product review",
            kind="rating",
            summary_instruction=(
                "Summarize how this user scores product reviews from 1 to 5: their typical "
                "score for positive reviews and for negative reviews, and how harsh or "
                "generous they are. Only output the summary."
            ),
            item_template='{score} is the score for "{text}"',
            query_markers=("review:",),
            score_keys=("score", "rating", "stars"),
            join=", and ",
            prompt_template="{summary}{items}. {input}",
            examples=("how many stars would I give this review?", "rate this product review from 1 to 5", "what score would I give this product?"),
        ),
        Task(
            name="news_headline",
            description="write a news headline in the style of this journalist",
            kind="generation",
            summary_instruction=(
                "Describe this journalist's headline style as a template (length, casing, "
                "punctuation, typical openings) and the topics they cover. Only output the summary."
            ),
            item_template='"{title}" is the title for "{text}"',
            query_markers=("article:",),
            output_keys=("title", "headline"),
            join=", and ",
            prompt_template="{summary}{items}. {input}",
            examples=("write a headline for this article", "give this news story a headline", "suggest a title for this article"),
        ),
        Task(
            name="scholarly_title",
            description="write a paper title in the style of this researcher",
            kind="generation",
            summary_instruction=(
                "Describe how this researcher titles papers as a template (length, casing, "
                "colons, typical openings) and their research topics. Only output the summary."
            ),
            item_template='"{title}" is the title for "{abstract}"',
            fallback_template='"{title}" is the title for "{text}"',
            query_markers=("paper:",),
            output_keys=("title",),
            join=", and ",
            prompt_template="{summary}{items}. " + _GEN_STYLE + "{input}",
            examples=("suggest a title for my paper", "what should I call my paper about this?", "write a title for this abstract"),
        ),
        Task(
            name="email_subject",
            description="write an e-mail subject line in this user's style",
            kind="generation",
            summary_instruction=(
                "Describe this user's e-mail subject lines as a template (length, casing, "
                "punctuation, typical openings) and what their e-mails are about. "
                "Only output the summary."
            ),
            item_template='"{subject}" is the title for "{text}"',
            fallback_template='"{title}" is the title for "{text}"',
            query_markers=("email:", "e-mail:"),
            output_keys=("subject",),
            join=", and ",
            prompt_template="{summary}{items}. {input}",
            examples=("write a subject line for this email", "suggest an e-mail subject", "what subject should this message have?"),
        ),
        Task(
            name="tweet_paraphrase",
            description="paraphrase a tweet in this user's voice",
            kind="generation",
            summary_instruction=(
                "Describe how this user writes tweets as a template (length, casing, "
                "punctuation, hashtags, mentions, emoji, typical openings) and their usual "
                "topics. Only output the summary."
            ),
            item_template='"{text}"',
            query_markers=("it:", "tweet:"),
            join=", and ",
            prompt_template="{summary}{items} are written by a person. " + _GEN_STYLE + "{input}",
            examples=("paraphrase this tweet", "rewrite this tweet in my voice", "say this as a tweet"),
        ),
        Task(
            name="chat",
            description="answer the user's messages in a personal assistant conversation",
            kind="chat",
            summary_instruction=(
                "Summarize what an assistant should know about this user to answer them well: "
                "stated preferences and dislikes, facts about them (work, diet, health, family, "
                "location), their goals, and how they like answers written. Prefer the most "
                "recent statement when they changed their mind. Only output the summary."
            ),
            item_template="{text}",
            prompt_template="{summary}Relevant things the user said before:\n{items}\n\n{input}",
        ),
    ])
