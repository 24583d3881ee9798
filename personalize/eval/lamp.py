"""LaMP-format evaluation of summary-augmented retrieval.

Reads LaMP's files (questions: ``[{id, input, profile: [...]}]``; outputs:
``{task, golds: [{id, output}]}``). For each question the profile is ingested
into a temporary user, the task summary is built offline (by the LLM, or by
the extractive summarizer), and the prompt the method prescribes is sent to
the LLM: the summary first, then ``k`` retrieved profile items in LaMP's
per-task template, then the input. Predictions are scored with LaMP's metrics
for each point of the grid: no personalization, k=1, k=4, summary+k=0 and
summary+k=1.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, NotFoundError
from ..tokens import default_token_counter
from ..types import LoadedItem
from .metrics import classification_scores, rating_scores, rouge_scores

__all__ = [
    "DEFAULT_GRID",
    "LAMP_TASKS",
    "GridPoint",
    "LampExample",
    "LampResult",
    "evaluate_lamp",
    "lamp_task_name",
    "load_lamp",
    "parse_grid",
]

logger = logging.getLogger(__name__)

#: LaMP benchmark number -> built-in task name.
LAMP_TASKS = {
    1: "citation", 2: "movie_tagging", 3: "product_rating", 4: "news_headline",
    5: "scholarly_title", 6: "email_subject", 7: "tweet_paraphrase",
}
# The text each profile item is indexed by (LaMP's per-task "corpus" for retrieval).
_CORPUS = {
    "citation": ("title", "abstract"), "movie_tagging": ("description",), "product_rating": ("text",),
    "news_headline": ("title", "text"), "scholarly_title": ("title", "abstract"),
    "email_subject": ("text",), "tweet_paraphrase": ("text",),
}
# LaMP field names that mean something else in the library's task templates.
_RENAME = {"email_subject": {"title": "subject"}}


@dataclass(frozen=True)
class GridPoint:
    """One configuration of the evaluation grid."""

    name: str
    k: int
    summary: bool


DEFAULT_GRID: tuple[GridPoint, ...] = (
    GridPoint("no_personalization", 0, False),
    GridPoint("k1", 1, False),
    GridPoint("k4", 4, False),
    GridPoint("summary_k0", 0, True),
    GridPoint("summary_k1", 1, True),
)


@dataclass(frozen=True)
class LampExample:
    """One LaMP question with its gold output."""

    id: str
    input: str
    profile: tuple[dict[str, Any], ...]
    gold: str


@dataclass(frozen=True)
class LampResult:
    """Scores of one evaluation run.

    Attributes:
        task: the library task name.
        lamp_task: the LaMP task id from the outputs file.
        examples: how many questions were evaluated.
        scores: per grid point, the metrics plus ``prompt_tokens`` (mean per prompt).
        llm: the model name.
        summary_generator: who wrote the summaries (model name or ``extractive``).
        llm_calls: predictions plus summary calls.
        seconds: wall time.
        predictions: per grid point, ``[{id, prediction, gold}]``.
    """

    task: str
    lamp_task: str
    examples: int
    scores: dict[str, dict[str, float]]
    llm: str
    summary_generator: str
    llm_calls: int
    seconds: float
    predictions: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def to_dict(self, *, with_predictions: bool = False) -> dict[str, Any]:
        """JSON-serializable form."""
        out = asdict(self)
        if not with_predictions:
            out.pop("predictions")
        return out


def lamp_task_name(lamp_task: str) -> str:
    """``"LaMP_2"`` / ``"LaMP-2"`` / ``"lamp2"`` -> ``"movie_tagging"``."""
    found = re.search(r"(\d+)", lamp_task or "")
    if not found or int(found.group(1)) not in LAMP_TASKS:
        raise ConfigError(f"not a LaMP task id: {lamp_task!r} (expected LaMP_1 ... LaMP_7)")
    return LAMP_TASKS[int(found.group(1))]


def load_lamp(questions: str | os.PathLike[str], outputs: str | os.PathLike[str]) -> tuple[str, list[LampExample]]:
    """Read a LaMP questions file and its outputs file.

    Returns:
        ``(lamp task id, examples)``, examples in the questions file's order.

    Raises:
        ConfigError: malformed files, or a question without a gold output.
    """
    try:
        q_data = json.loads(Path(questions).read_text(encoding="utf-8"))
        o_data = json.loads(Path(outputs).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the LaMP files: {exc}") from exc
    if not isinstance(q_data, list) or not isinstance(o_data, dict) or "golds" not in o_data:
        raise ConfigError("expected questions as [{id, input, profile}] and outputs as {task, golds}")
    golds = {str(g["id"]): str(g["output"]) for g in o_data["golds"]}
    examples = []
    for q in q_data:
        qid = str(q["id"])
        if qid not in golds:
            raise ConfigError(f"question {qid} has no gold output")
        examples.append(LampExample(qid, str(q["input"]), tuple(q.get("profile") or ()), golds[qid]))
    return str(o_data.get("task", "")), examples


def _profile_items(task: str, profile: Sequence[dict[str, Any]]) -> list[LoadedItem]:
    keys = _CORPUS.get(task, ("text",))
    rename = _RENAME.get(task, {})
    items = []
    for n, entry in enumerate(profile):
        text = " ".join(str(entry.get(k, "")).strip() for k in keys).strip()
        if not text:
            continue
        metadata = {rename.get(k, k): v for k, v in entry.items() if k != "id" and v is not None}
        items.append(LoadedItem(text=text, external_id=str(entry.get("id", n)), metadata=metadata,
                                source="<lamp profile>"))
    return items


def evaluate_lamp(
    questions: str | os.PathLike[str],
    outputs: str | os.PathLike[str],
    llm: Any,
    *,
    embedder: Any = None,
    grid: Sequence[GridPoint] = DEFAULT_GRID,
    summaries: Literal["llm", "extractive"] = "llm",
    limit: int | None = None,
    workdir: str | os.PathLike[str] | None = None,
    max_new_tokens: int = 128,
) -> LampResult:
    """Run the grid over a LaMP-format file pair and score it.

    Args:
        questions: the questions JSON.
        outputs: the outputs (golds) JSON.
        llm: the model that answers (an :class:`~personalize.llm.LLM`).
        embedder: for retrieval (default: the bundled MiniLM).
        grid: the configurations to score.
        summaries: who writes the task summaries: the LLM (the method) or the
            extractive summarizer.
        limit: evaluate only the first ``limit`` questions.
        workdir: where the temporary users live (default: a temporary folder).
        max_new_tokens: answer length bound.

    Returns:
        Scores per grid point.

    Raises:
        ConfigError: bad files or arguments.
        LLMError: a prediction call failed after the LLM's retries.
    """
    from ..personalizer import Personalizer

    if llm is None:
        raise ConfigError("LaMP evaluation needs an LLM: pass --llm-model/--llm-base-url or set PERSONALIZE_LLM_*")
    if not grid:
        raise ConfigError("the grid is empty")
    lamp_task, examples = load_lamp(questions, outputs)
    task_name = lamp_task_name(lamp_task)
    examples = examples[:limit] if limit is not None else examples
    started = time.perf_counter()
    counter = default_token_counter()
    predictions: dict[str, list[dict[str, str]]] = {g.name: [] for g in grid}
    tokens: dict[str, list[int]] = {g.name: [] for g in grid}
    calls = 0
    generator = "extractive"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        p = Personalizer.open(tmp, embedder=embedder, llm=llm if summaries == "llm" else None)
        try:
            task = p.tasks.get(task_name)
            need_summary = any(g.summary for g in grid)
            for n, example in enumerate(examples):
                user = f"lamp-{n}"
                p.add_documents(user, _profile_items(task_name, example.profile), progress=False)
                summary_text = None
                if need_summary and p.store.has_user(user):
                    report = p.refresh(user, tasks=[task_name], steps=("summaries",))
                    calls += report.llm_calls
                    summary = p.summary(user, task_name)
                    if summary is not None:
                        summary_text, generator = summary.text, summary.generator
                k_max = max(g.k for g in grid)
                hits = p.search(user, task.retrieval_query(example.input), k=k_max * 3) if k_max and p.store.has_user(user) else []
                rendered, seen = [], set()
                for hit in hits:
                    key = hit.external_id or hit.chunk.id
                    if key not in seen:
                        seen.add(key)
                        rendered.append(task.render_item(hit.text, hit.metadata))
                for point in grid:
                    prompt = task.build_prompt(example.input, rendered[: point.k],
                                               summary_text if point.summary else None)
                    tokens[point.name].append(counter.count(prompt))
                    answer = llm.complete([{"role": "user", "content": prompt}], max_tokens=max_new_tokens)
                    calls += 1
                    predictions[point.name].append(
                        {"id": example.id, "prediction": task.parse_prediction(answer), "gold": example.gold})
        finally:
            p.close()
    scores = {}
    for point in grid:
        preds = [x["prediction"] for x in predictions[point.name]]
        golds = [x["gold"] for x in predictions[point.name]]
        if task.metric == "classification":
            labels = task.labels if task.labels and set(golds) <= set(task.labels) else None
            metrics = classification_scores(golds, preds, labels)
        elif task.metric == "rating":
            metrics = rating_scores(golds, preds)
        else:
            metrics = rouge_scores(golds, preds)
        metrics["prompt_tokens"] = sum(tokens[point.name]) / max(len(tokens[point.name]), 1)
        scores[point.name] = metrics
    return LampResult(
        task=task_name, lamp_task=lamp_task, examples=len(examples), scores=scores,
        llm=str(getattr(llm, "name", "llm")), summary_generator=generator, llm_calls=calls,
        seconds=time.perf_counter() - started, predictions=predictions,
    )


def parse_grid(spec: str | Sequence[str] | None) -> tuple[GridPoint, ...]:
    """Grid points by name (``"k1,summary_k1"``); ``None``: the default grid."""
    if spec is None:
        return DEFAULT_GRID
    names = [n.strip() for part in ([spec] if isinstance(spec, str) else spec) for n in part.split(",") if n.strip()]
    known = {g.name: g for g in DEFAULT_GRID}
    out = []
    for name in names:
        if name in known:
            out.append(known[name])
        elif m := re.fullmatch(r"(summary_)?k(\d+)", name):
            out.append(GridPoint(name, int(m.group(2)), bool(m.group(1))))
        else:
            raise NotFoundError(f"unknown grid point {name!r}; known: {', '.join(known)} (or k<N>, summary_k<N>)")
    return tuple(out)
