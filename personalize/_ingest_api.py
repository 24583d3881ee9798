"""Personalizer methods that write a user's data: documents, files and chat turns.

Text and paths are never confused: a ``str`` is always the text of a document
(``"TCP/IP"`` and ``"/etc/hostname"`` are stored as written), and only an
``os.PathLike`` (a :class:`pathlib.Path`) is read from disk, by
:meth:`add_files` or inside :meth:`add_documents`. A server-facing surface
passes strings, so it can never make the library read the server's files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._ids import validate_user_id
from ._validate import as_metadata, as_metadata_list
from .errors import ConfigError, ConflictError, IngestError
from .storage._writes import ON_CONFLICT, new_call_id
from .types import FileError, IngestResult, LoadedItem

__all__ = ["IngestMixin"]

logger = logging.getLogger(__name__)


class IngestMixin:
    """Ingest methods of :class:`personalize.Personalizer` (relies on its store, ingestor and index)."""

    store: Any
    config: Any
    index: Any

    def add_documents(
        self,
        user_id: str,
        inputs: str | os.PathLike[str] | Iterable[Any],
        *,
        ids: Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        on_conflict: str = "replace",
        progress: bool | None = None,
    ) -> IngestResult:
        """Ingest texts, files, folders or LlamaIndex ``Document`` objects for ``user_id``.

        Args:
            user_id: whose data this is.
            inputs: one input or an iterable of them: ``str`` (always the text of
                a document, never a path), ``os.PathLike`` (a file or a folder,
                read recursively), LlamaIndex ``Document``s, :class:`LoadedItem`s.
            ids: the caller's own id for each input: the item's key within the
                user (returned with every hit, used by ``documents.get/delete``).
            metadata: one mapping merged into every input's metadata, or a list
                of mappings aligned with ``inputs``.
            on_conflict: what to do when an input's caller id already exists:
                ``"replace"`` the stored version (default; atomic: a search sees
                the old version or the new one, never both), ``"skip"`` the input,
                or ``"error"`` (:class:`ConflictError`, nothing written).
            progress: show a progress bar (default: on a terminal, for long ingests).

        Returns:
            What was added, replaced and skipped, and a clear error per input
            that could not be read (one bad file never aborts the batch).
        """
        validate_user_id(user_id)
        if isinstance(inputs, (str, bytes, os.PathLike)) or not isinstance(inputs, Iterable) or hasattr(
            inputs, "get_content"
        ):
            inputs = [inputs]
        inputs = list(inputs)
        ids = self._check_ids(ids, len(inputs))
        metadatas = as_metadata_list(metadata, len(inputs))
        self._check_conflict(user_id, on_conflict, [i for i in ids or () if i is not None])
        errors: list[FileError] = []
        items = self._load_inputs(inputs, ids, metadatas, errors)
        return self._ingest_items(user_id, items, errors, on_conflict=on_conflict, progress=progress)

    def add_files(
        self,
        user_id: str,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        ids: Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        on_conflict: str = "replace",
        progress: bool | None = None,
    ) -> IngestResult:
        """Ingest files and folders (paths as ``str`` or ``os.PathLike``); folders are read recursively.

        The one call that reads the file system from strings: keep it away from
        anything a remote caller controls.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        converted = []
        for path in paths:
            if not isinstance(path, (str, os.PathLike)):
                raise ConfigError(f"paths must be str or os.PathLike, not {type(path).__name__}")
            converted.append(path if isinstance(path, os.PathLike) else Path(path))
        return self.add_documents(user_id, converted, ids=ids, metadata=metadata, on_conflict=on_conflict,
                                  progress=progress)

    def add_messages(
        self,
        user_id: str,
        messages: Iterable[Mapping[str, Any]],
        *,
        session: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_conflict: str = "replace",
        progress: bool | None = None,
    ) -> IngestResult:
        """Ingest chat turns (``{"role", "content", "timestamp"?, "id"?, "name"?, "metadata"?}``).

        Turns keep their speaker, session and time, so retrieval can return a
        turn with its neighbours. A turn with an ``id`` the user already has
        replaces it (``on_conflict`` as in :meth:`add_documents`). An invalid
        turn is reported and skipped alone.
        """
        from .loaders import load_messages

        validate_user_id(user_id)
        if isinstance(messages, (str, bytes, Mapping)):
            raise ConfigError("messages must be a list of message mappings")
        extra = as_metadata(metadata)
        items, errors = load_messages(list(messages), session=session, limits=self.config.loader_limits)
        if extra:
            items = [replace(item, metadata={**item.metadata, **extra}) for item in items]
        self._check_conflict(user_id, on_conflict, [i.external_id for i in items if i.external_id is not None])
        return self._ingest_items(user_id, items, errors, on_conflict=on_conflict, progress=progress,
                                  total=len(items))

    # ---------------------------------------------------------------- internals
    def _ingest_items(
        self,
        user_id: str,
        items: Iterable[LoadedItem],
        errors: list[FileError],
        *,
        on_conflict: str,
        progress: bool | None,
        total: int | None = None,
    ) -> IngestResult:
        result = self._ingestor.ingest(
            user_id, items, progress=progress, total=total, on_conflict=on_conflict, call=new_call_id()
        )
        self._save_index(user_id)
        return replace(result, errors=tuple(errors) + result.errors) if errors else result

    @staticmethod
    def _check_ids(ids: Sequence[str | None] | None, count: int) -> list[str | None] | None:
        if ids is None:
            return None
        if isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        if len(ids) != count:
            raise ConfigError(f"got {len(ids)} ids for {count} inputs")
        for value in ids:
            if value is not None and (not isinstance(value, str) or not value or len(value) > 512 or "\x00" in value):
                raise ConfigError("ids must be non-empty str (at most 512 characters, no NUL) or None")
        return ids

    def _check_conflict(self, user_id: str, on_conflict: str, external_ids: list[str]) -> None:
        if on_conflict not in ON_CONFLICT:
            raise ConfigError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}")
        if on_conflict == "error" and external_ids:
            # Checked before anything is loaded or embedded; the write checks again
            # inside its transaction, for a writer that raced this one.
            taken = self.store.existing_external_ids(user_id, external_ids)
            if taken:
                raise ConflictError(f"{len(taken)} of the caller ids already exist (on_conflict='error')")

    def _load_inputs(
        self,
        inputs: list[Any],
        ids: Sequence[str | None] | None,
        metadatas: list[dict[str, Any]],
        errors: list[FileError],
    ) -> Iterator[LoadedItem]:
        from .loaders import iter_input_files, load_path, load_text

        limits = self.config.loader_limits
        for n, value in enumerate(inputs):
            external_id = ids[n] if ids is not None else None
            metadata = metadatas[n]
            try:
                if isinstance(value, LoadedItem):
                    yield _merge_metadata(value, metadata, external_id)
                elif isinstance(value, str):
                    yield load_text(value, external_id=external_id, metadata=metadata, limits=limits)
                elif isinstance(value, os.PathLike):
                    for path in iter_input_files([value]):
                        try:
                            for item in load_path(path, limits, errors=errors):
                                yield _merge_metadata(item, metadata, external_id)
                        except IngestError as exc:
                            errors.append(FileError(str(path), str(exc), getattr(exc, "kind", "unreadable")))
                elif hasattr(value, "get_content") and hasattr(value, "metadata"):  # LlamaIndex Document
                    yield load_text(
                        value.get_content(),
                        source=str(value.metadata.get("file_path", "<llama_index>")),
                        external_id=external_id or getattr(value, "id_", None),
                        metadata={**dict(value.metadata), **metadata},
                        limits=limits,
                    )
                else:
                    raise IngestError(
                        f"input #{n} is a {type(value).__name__}; expected a str (text), an os.PathLike "
                        "(file or folder) or a Document"
                    )
            except IngestError as exc:
                errors.append(FileError(getattr(exc, "source", f"<input #{n}>"), str(exc), getattr(exc, "kind", "invalid")))


def _merge_metadata(item: LoadedItem, metadata: Mapping[str, Any], external_id: str | None = None) -> LoadedItem:
    if not metadata and external_id is None:
        return item
    return replace(
        item,
        metadata={**item.metadata, **metadata},
        external_id=external_id if external_id is not None else item.external_id,
    )
