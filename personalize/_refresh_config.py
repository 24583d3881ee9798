"""What a refresh is told (:class:`RefreshConfig`) and what it reports (:class:`RefreshReport`)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["STEPS", "RefreshConfig", "RefreshFailure", "RefreshReport"]

STEPS: tuple[str, ...] = ("persona", "summaries", "memory")


@dataclass(frozen=True)
class RefreshConfig:
    """How refresh works (all optional).

    Attributes:
        persona_batch_chunks: chunks read per persona batch (one commit each).
        llm_input_tokens: the most tokens of user data per persona or summary LLM call.
        persona_max_attempts: after this many failed LLM attempts on the same
            persona batch, that batch is extracted by the rules instead (and
            reported), so one poisonous chunk cannot block a user forever.
        duplicate_threshold: cosine at or above which two facts merge.
        representatives: items quoted by an extractive summary.
        memory_max_tokens: the bound of every memory version.
        memory_window_tokens: new conversation per memory rewrite call.
        when_busy: another process or host is refreshing the same user (they
            share the store's per-user lock): ``"wait"`` for it to finish, then
            refresh what is still stale, or ``"skip"`` at once
            (``RefreshReport.skipped_busy``).
        llm_fallback: when an LLM summary fails and the user has no summary for
            that task yet, store the extractive one meanwhile (the failure is
            still reported and retried).
    """

    persona_batch_chunks: int = 64
    llm_input_tokens: int = 3000
    persona_max_attempts: int = 3
    duplicate_threshold: float = 0.92
    representatives: int = 5
    memory_max_tokens: int = 2000
    memory_window_tokens: int = 1500
    llm_fallback: bool = True
    when_busy: str = "wait"

    def __post_init__(self) -> None:
        for name in ("persona_batch_chunks", "llm_input_tokens", "persona_max_attempts",
                     "memory_max_tokens", "memory_window_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.when_busy not in ("wait", "skip"):
            raise ConfigError("RefreshConfig.when_busy must be 'wait' or 'skip'")
        if not 0.0 < self.duplicate_threshold <= 1.0:
            raise ConfigError("duplicate_threshold must be in (0, 1]")


@dataclass(frozen=True)
class RefreshFailure:
    """One step that failed (and will be retried by the next refresh)."""

    step: str
    error: str
    attempts: int


@dataclass(frozen=True)
class RefreshReport:
    """What one user's refresh did.

    Attributes:
        user_id: whose refresh.
        facts_added, facts_superseded, facts_merged: persona fact changes.
        facts_pruned: facts deleted because all their source data was deleted.
        chunks_read: new chunks the persona step consumed.
        summaries_rebuilt: tasks whose summary was (re)built.
        summaries_skipped: tasks whose summary was already fresh.
        memory_version: the memory's latest version after the refresh.
        failures: steps that failed (``"persona"``, ``"summary:<task>"``, ``"memory"``).
        llm_calls: LLM calls made (a structured call counts once, repairs included).
        seconds: wall time.
        data_version: the user's data version the refresh worked from.
        skipped_busy: nothing was done: another process or host was refreshing
            this user and ``RefreshConfig.when_busy`` is ``"skip"``.
    """

    user_id: str
    facts_added: int = 0
    facts_superseded: int = 0
    facts_merged: int = 0
    facts_pruned: int = 0
    chunks_read: int = 0
    summaries_rebuilt: tuple[str, ...] = ()
    summaries_skipped: tuple[str, ...] = ()
    memory_version: int | None = None
    failures: tuple[RefreshFailure, ...] = ()
    llm_calls: int = 0
    seconds: float = 0.0
    data_version: int = 0
    skipped_busy: bool = False

    @property
    def ok(self) -> bool:
        """No step failed."""
        return not self.failures
