"""Build the LLM from environment variables, or report that none is configured."""

from __future__ import annotations

import logging
from typing import Any

from personalize.llm.openai_chat import OpenAIChat, _env

__all__ = ["llm_from_env"]

logger = logging.getLogger(__name__)


def llm_from_env(**overrides: Any) -> OpenAIChat | None:
    """An :class:`OpenAIChat` when the environment configures an LLM, else None.

    An LLM is configured when a model (``PERSONALIZE_LLM_MODEL`` or ``OPENAI_MODEL``)
    and an endpoint or key (``PERSONALIZE_LLM_BASE_URL``, ``OPENAI_BASE_URL``,
    ``PERSONALIZE_LLM_API_KEY`` or ``OPENAI_API_KEY``) are set. None means the caller
    uses the embedded extractive summarizer and rule-based persona extractor.

    Args:
        **overrides: keyword arguments for :class:`OpenAIChat` (``timeout``,
            ``retry``, ``json_mode``...); explicit values win over the environment.

    Returns:
        The configured client, or None.

    Raises:
        ConfigError: an override is invalid.
    """
    model = overrides.get("model") or _env("PERSONALIZE_LLM_MODEL", "OPENAI_MODEL")
    endpoint = (
        overrides.get("base_url")
        or overrides.get("api_key")
        or _env(
            "PERSONALIZE_LLM_BASE_URL",
            "OPENAI_BASE_URL",
            "PERSONALIZE_LLM_API_KEY",
            "OPENAI_API_KEY",
        )
    )
    if not endpoint:
        return None
    if not model:
        # Not silent: an endpoint without a model is almost always a forgotten variable,
        # and the caller would otherwise quietly get the extractive fallback.
        logger.warning(
            "an LLM endpoint or key is set but no model; set PERSONALIZE_LLM_MODEL "
            "(using the no-LLM fallback)"
        )
        return None
    return OpenAIChat(**overrides)
