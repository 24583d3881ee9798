"""Offline refresh: persona facts, stale task summaries and the agentic memory of a user.

Incremental: persona extraction and the memory consume only chunks newer than
their cursor in ``refresh_state``; a summary is rebuilt only when it is
missing, older than the user's data version, or failed last time (or with
``force``).

Resumable: each unit of work commits its result *and* its cursor in one
transaction (a persona batch, one task's summary, one memory window), so a
refresh killed at any point resumes where it stopped, without losing or
repeating anything.

Failures never crash a refresh and are never silent: the LLM layer retries
transient errors; what still fails is recorded in ``refresh_state`` (status
``failed``, the error, the attempt count), logged as a warning, returned in the
:class:`RefreshReport`, and retried by the next refresh.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._refresh_config import STEPS, RefreshConfig, RefreshFailure, RefreshReport
from .embeddings import Embedder, QueryCache
from .errors import ConfigError, NotFoundError
from .memory import AgenticMemory
from .persona import FactRepository, LLMFactExtractor, RuleExtractor
from .storage import new_call_id
from .store import Store
from .summaries import ExtractiveSummarizer, LLMSummarizer, SummaryRepository, load_items
from .summaries.selection import task_items
from .tasks import Task, TaskRegistry
from .types import Chunk

__all__ = ["STEPS", "RefreshConfig", "RefreshFailure", "RefreshReport", "Refresher"]

logger = logging.getLogger(__name__)

class _CountingLLM:
    """Counts calls to the wrapped LLM (per refresh, across threads)."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return str(getattr(self._llm, "name", "llm"))

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def complete(self, messages: Any, **kwargs: Any) -> str:
        self._count()
        return self._llm.complete(messages, **kwargs)

    def structured(self, messages: Any, schema: Any, **kwargs: Any) -> Any:
        self._count()
        return self._llm.structured(messages, schema, **kwargs)


@dataclass
class _Run:
    """Mutable tallies of one refresh."""

    user_id: str
    llm: _CountingLLM | None
    version: int
    added: int = 0
    superseded: int = 0
    merged: int = 0
    pruned: int = 0
    chunks: int = 0
    rebuilt: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[RefreshFailure] = field(default_factory=list)


def _mark(query: Callable[[str, tuple], list], user_id: str, chunk_id: int) -> str:
    """A short hash of one chunk's text ("" when it does not exist)."""
    if chunk_id <= 0:
        return ""
    rows = query("SELECT text FROM chunks WHERE user_id = ? AND id = ?", (user_id, chunk_id))
    return hashlib.sha256(rows[0][0].encode("utf-8", "surrogatepass")).hexdigest()[:16] if rows else ""


def _describe(exc: BaseException) -> str:
    # Error text from our LLM layer never carries prompts; still, keep it short.
    return f"{type(exc).__name__}: {exc}"[:500]


class Refresher:
    """Runs refreshes over one store.

    Args:
        store: the SQLite store.
        embedder: embeds facts.
        queries: embeds task descriptions (cached).
        tasks: the task registry.
        llm: the LLM, or ``None`` for the extractive and rule-based fallbacks.
        config: refresh settings.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        queries: QueryCache,
        tasks: TaskRegistry,
        llm: Any = None,
        config: RefreshConfig | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.queries = queries
        self.tasks = tasks
        self.llm = llm
        self.config = config or RefreshConfig()
        self.facts = FactRepository(store, embedder, duplicate_threshold=self.config.duplicate_threshold)
        self.summaries = SummaryRepository(store)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------- public
    def refresh(
        self,
        user_id: str,
        tasks: Iterable[str | Task] | None = None,
        *,
        force: bool = False,
        steps: Sequence[str] = STEPS,
    ) -> RefreshReport:
        """Refresh one user (see the module docstring); never raises for a failed step.

        Raises:
            NotFoundError: the user has no data, or a task is unknown.
        """
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ConfigError(f"unknown refresh steps {sorted(unknown)}; known: {list(STEPS)}")
        chosen = [self.tasks.get(t) for t in tasks] if tasks is not None else list(self.tasks)
        if not self.store.has_user(user_id):
            raise NotFoundError("unknown user (ids are case-sensitive)")
        started = time.perf_counter()
        wait = self.config.when_busy == "wait"
        # One refresher per user: threads of this process, then every process
        # and host sharing the store (a file lock for SQLite, an advisory lock
        # for PostgreSQL).
        with self._lock(user_id), self.store.user_lock(user_id, "refresh", wait=wait) as acquired:
            if not acquired:
                logger.info("another process is refreshing this user; skipped")
                return RefreshReport(user_id=user_id, skipped_busy=True, data_version=self.store.data_version(user_id),
                                     seconds=time.perf_counter() - started)
            run = _Run(user_id, _CountingLLM(self.llm) if self.llm is not None else None,
                       self.store.data_version(user_id))
            memory_before = self._memory_version(user_id)
            if "persona" in steps:
                self._persona(run)
            if "summaries" in steps:
                self._summaries(run, chosen, force)
            memory_version = self._memory(run, force) if "memory" in steps else None
            if run.added or run.superseded or run.pruned or run.rebuilt or memory_version != memory_before:
                with self.store.transaction(user_id) as cur:
                    self.store.record(cur, user_id, "refresh", new_call_id(), "knowledge", {
                        "facts_added": run.added, "facts_superseded": run.superseded, "facts_pruned": run.pruned,
                        "summaries_rebuilt": list(run.rebuilt), "memory_version": memory_version,
                    })
        return RefreshReport(
            user_id=user_id, facts_added=run.added, facts_superseded=run.superseded,
            facts_merged=run.merged, facts_pruned=run.pruned, chunks_read=run.chunks,
            summaries_rebuilt=tuple(run.rebuilt), summaries_skipped=tuple(run.skipped),
            memory_version=memory_version, failures=tuple(run.failures),
            llm_calls=run.llm.calls if run.llm is not None else 0,
            seconds=time.perf_counter() - started, data_version=run.version,
        )

    def refresh_all(
        self,
        users: Sequence[str],
        tasks: Iterable[str | Task] | None = None,
        *,
        force: bool = False,
        concurrency: int = 4,
        progress: bool | None = None,
        on_report: Callable[[RefreshReport], None] | None = None,
    ) -> list[RefreshReport]:
        """Refresh many users with a thread pool; one user's failure never stops the others.

        Args:
            users: the user ids.
            tasks: the tasks (default: every registered task).
            force: rebuild summaries and memory even when fresh.
            concurrency: users refreshed at once (LLM calls are further limited
                by the LLM client's own concurrency limit).
            progress: show a progress bar (default: when stderr is a terminal).
            on_report: called with each report as it completes.

        Returns:
            One report per user, in the order of ``users``.
        """
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        task_list = list(tasks) if tasks is not None else None
        for t in task_list or ():
            self.tasks.get(t)  # fail fast on an unknown task, before any work
        from tqdm.auto import tqdm

        reports: dict[str, RefreshReport] = {}
        # tqdm's disable=None: shown only when stderr is a terminal.
        disable = None if progress is None else not progress
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh") as pool, \
                tqdm(total=len(users), unit="user", desc="refresh", disable=disable, leave=False) as bar:
            futures = {pool.submit(self.refresh, u, task_list, force=force): u for u in users}
            for future in as_completed(futures):
                user = futures[future]
                try:
                    report = future.result()
                except Exception as exc:  # an unknown user, a broken store: report, go on
                    logger.warning("refresh of one user failed: %s", type(exc).__name__)
                    report = RefreshReport(user, failures=(RefreshFailure("refresh", _describe(exc), 1),))
                reports[user] = report
                bar.update(1)
                if on_report is not None:
                    on_report(report)
        return [reports[u] for u in users]

    # ------------------------------------------------------------ state
    def state(self, user_id: str, step: str) -> dict[str, Any] | None:
        """The ``refresh_state`` row of one step (cursor, status, error, attempts, seen, mark)."""
        rows = self.store.query(
            "SELECT cursor, status, error, attempts, seen, mark FROM refresh_state WHERE user_id = ? AND step = ?",
            (user_id, step), user_id=user_id,
        )
        if not rows:
            return None
        cursor, status, error, attempts, seen, mark = rows[0]
        return {"cursor": int(cursor), "status": status, "error": error, "attempts": int(attempts),
                "seen": int(seen), "mark": mark or ""}

    def _moved(self, user_id: str, state: dict[str, Any] | None, ids: np.ndarray) -> bool:
        """Whether chunks at or below a cursor were deleted since it was set.

        Then the chunks below the cursor are no longer exactly those it
        consumed: SQLite gives a new row the largest id plus one, so after the
        newest chunks are deleted new ones reuse their ids. The cursor's own
        chunk is fingerprinted (``mark``) and the chunks below it counted
        (``seen``) to notice either change.
        """
        if not state or state["cursor"] == 0:
            return False
        cursor = state["cursor"]
        if state["mark"] and state["mark"] != _mark(lambda sql, params: self.store.query(sql, params, user_id=user_id), user_id, cursor):
            return True
        return int(np.searchsorted(ids, cursor, side="right")) < state["seen"]

    def _memory_version(self, user_id: str) -> int | None:
        rows = self.store.query("SELECT MAX(version) FROM memories WHERE user_id = ?", (user_id,), user_id=user_id)
        return rows[0][0] if rows else None

    def failed_steps(self, user_id: str) -> list[RefreshFailure]:
        """Steps whose last attempt failed (they are retried by the next refresh)."""
        return [RefreshFailure(step, error or "", int(attempts)) for step, error, attempts in self.store.query(
            "SELECT step, error, attempts FROM refresh_state WHERE user_id = ? AND status = 'failed' ORDER BY step",
            (user_id,), user_id=user_id)]

    @staticmethod
    def _ok(cur: Any, user_id: str, step: str, cursor: int, ids: np.ndarray) -> None:
        seen = int(np.searchsorted(ids, cursor, side="right"))
        mark = _mark(lambda sql, params: cur.execute(sql, params).fetchall(), user_id, cursor)
        cur.execute(
            "INSERT INTO refresh_state (user_id, step, cursor, status, error, attempts, seen, mark, updated_at) "
            "VALUES (?, ?, ?, 'ok', NULL, 0, ?, ?, ?) ON CONFLICT (user_id, step) DO UPDATE SET "
            "cursor = excluded.cursor, status = 'ok', error = NULL, attempts = 0, seen = excluded.seen, "
            "mark = excluded.mark, updated_at = excluded.updated_at",
            (user_id, step, cursor, seen, mark, time.time()),
        )

    def _fail(self, run: _Run, step: str, exc: BaseException) -> None:
        error = _describe(exc)
        with self.store.transaction(run.user_id) as cur:
            cur.execute(
                "INSERT INTO refresh_state (user_id, step, cursor, status, error, attempts, seen, updated_at) "
                "VALUES (?, ?, 0, 'failed', ?, 1, 0, ?) ON CONFLICT (user_id, step) DO UPDATE SET "
                "status = 'failed', error = excluded.error, attempts = attempts + 1, updated_at = excluded.updated_at",
                (run.user_id, step, error, time.time()),
            )
            attempts = cur.execute("SELECT attempts FROM refresh_state WHERE user_id = ? AND step = ?",
                                   (run.user_id, step)).fetchone()[0]
        logger.warning("refresh step %s failed (attempt %d; retried next refresh): %s",
                       step, attempts, type(exc).__name__)
        run.failures.append(RefreshFailure(step, error, int(attempts)))

    def _lock(self, user_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(user_id, threading.Lock())

    def _chunks(self, user_id: str, ids: Sequence[int]) -> list[Chunk]:
        found = self.store.chunks(user_id, list(ids))
        return [found[i] for i in ids if i in found]

    # ------------------------------------------------------------- steps
    def _persona(self, run: _Run) -> None:
        user = run.user_id
        found = self.state(user, "persona")
        state = found or {"cursor": 0, "seen": 0, "status": "ok", "attempts": 0, "mark": ""}
        ids = self.store.chunk_ids(user)
        cursor = state["cursor"]
        if self._moved(user, found, ids):
            # Data was deleted: facts must not outlive it, and since new chunks may
            # have reused deleted ids, everything is read again (duplicates merge).
            logger.info("data was deleted since the last refresh; re-reading one user's data")
            cursor = 0
            chunk_ids, texts = self.store.chunk_texts(user)
            with self.store.transaction(user) as cur:
                run.pruned += self.facts.prune_deleted(cur, user, dict(zip(chunk_ids.tolist(), texts)))
                self._ok(cur, user, "persona", cursor, ids)
        pending = ids[ids > cursor].tolist()
        use_rules_once = (run.llm is not None and state["status"] == "failed"
                          and state["attempts"] >= self.config.persona_max_attempts)
        size = self.config.persona_batch_chunks
        norms: dict[str, str] = {}  # normalized fact texts, for this refresh's batches only
        for start in range(0, len(pending), size):
            page = pending[start:start + size]
            for batch, end in self._persona_batches(run, self._chunks(user, page), page[-1]):
                extractor: Any = RuleExtractor()
                if run.llm is not None and not use_rules_once:
                    extractor = LLMFactExtractor(run.llm, max_input_tokens=self.config.llm_input_tokens)
                try:
                    current = self.facts.facts(user) if not isinstance(extractor, RuleExtractor) else ()
                    candidates = extractor.extract(batch, current)
                    vectors = self.facts.embed(candidates) if candidates else None
                except Exception as exc:
                    self._fail(run, "persona", exc)
                    return  # the cursor stays before this batch: retried next refresh
                if use_rules_once:
                    logger.warning("persona batch failed %d times with the LLM; extracted it with rules",
                                   state["attempts"])
                    run.failures.append(RefreshFailure(
                        "persona", f"extracted with rules after {state['attempts']} failed LLM attempts",
                        state["attempts"]))
                    use_rules_once = False
                with self.store.transaction(user) as cur:
                    changes = self.facts.apply(cur, user, candidates, extractor.name, vectors, norms)
                    self._ok(cur, user, "persona", end, ids)
                run.added += changes.added
                run.superseded += changes.superseded
                run.merged += changes.merged
                run.chunks += len(batch)

    def _persona_batches(self, run: _Run, chunks: list[Chunk], page_end: int) -> list[tuple[list[Chunk], int]]:
        """``(chunks, cursor after them)``: one batch for rules, token-bounded batches for an LLM."""
        if run.llm is None:
            return [(chunks, page_end)]
        extractor = LLMFactExtractor(run.llm, max_input_tokens=self.config.llm_input_tokens)
        relevant = extractor.relevant(chunks)
        batches = extractor.batches(relevant)
        if not batches:
            return [([], page_end)]  # only assistant turns: nothing to send, move on
        out = [(b, b[-1].id) for b in batches]
        out[-1] = (out[-1][0], page_end)
        return out

    def _summaries(self, run: _Run, tasks: list[Task], force: bool) -> None:
        user = run.user_id
        stored = self.summaries.versions(user)
        failed = {f.step for f in self.failed_steps(user)}
        loaded: tuple[Any, Any] | None = None
        facts = None
        for task in tasks:
            step = f"summary:{task.name}"
            fresh = task.name in stored and stored[task.name] >= run.version and step not in failed
            if fresh and not force:
                run.skipped.append(task.name)
                continue
            if loaded is None:
                loaded = load_items(self.store, user)
                facts = self.facts.facts(user)
            items, vectors = loaded
            task_vector = self.queries.embed_one(task.description)
            extractive = ExtractiveSummarizer(representatives=self.config.representatives)
            summarizer: Any = extractive
            if run.llm is not None and task_items(task, items):  # nothing of the user's: no call
                summarizer = LLMSummarizer(run.llm, max_input_tokens=self.config.llm_input_tokens)
            try:
                draft = summarizer.summarize(task, items, vectors, task_vector, facts or ())
            except Exception as exc:
                self._fail(run, step, exc)
                if self.config.llm_fallback and run.llm is not None and task.name not in stored:
                    draft = extractive.summarize(task, items, vectors, task_vector, facts or ())
                    with self.store.transaction(user) as cur:
                        self.summaries.put(cur, user, task.name, draft, run.version)
                    logger.warning("stored the extractive summary for task %s until the LLM succeeds", task.name)
                continue
            with self.store.transaction(run.user_id) as cur:
                self.summaries.put(cur, user, task.name, draft, run.version)
                self._ok(cur, user, step, 0, ids=np.zeros(0, np.int64))
            run.rebuilt.append(task.name)

    def _memory(self, run: _Run, force: bool) -> int | None:
        user = run.user_id
        memory = AgenticMemory(self.store, run.llm, max_tokens=self.config.memory_max_tokens,
                               window_tokens=self.config.memory_window_tokens)
        state = self.state(user, "memory")
        ids = self.store.chunk_ids(user)
        cursor = state["cursor"] if state else 0
        # Data deleted since the last version, or forced: rebuild from the start.
        rebuild = force or self._moved(user, state, ids)
        if rebuild:
            cursor = 0
        latest = memory.latest(user)
        pending = ids[ids > cursor].tolist()
        try:
            if run.llm is None:
                text = memory.extractive(self.facts.facts(user, history=True), self.summaries.all(user))
                end = int(ids[-1]) if len(ids) else 0
                with self.store.transaction(user) as cur:
                    if latest is None or latest.text != text:
                        memory.save(cur, user, text, memory.generator, run.version)
                    self._ok(cur, user, "memory", end, ids)
            else:
                current = "" if rebuild or latest is None else latest.text
                chunks = self._chunks(user, pending)
                for window in memory.windows(chunks):
                    current = memory.rewrite(current, window)
                    end = window[-1].id
                    with self.store.transaction(user) as cur:
                        memory.save(cur, user, current, memory.generator, run.version)
                        self._ok(cur, user, "memory", end, ids)
        except Exception as exc:
            self._fail(run, "memory", exc)
        latest = memory.latest(user)
        return latest.version if latest is not None else None
