"""Persona facts: what the user said about themselves, kept current over time.

- :class:`RuleExtractor`: deterministic extraction of first-person statements (no LLM).
- :class:`LLMFactExtractor`: extraction with any :class:`~personalize.llm.LLM`
  (structured output validated by :class:`ExtractedFacts`).
- :class:`FactRepository`: the ``facts`` table: duplicates merge, contradictions
  supersede (history kept), embeddings stored for query-time matching.
"""

from __future__ import annotations

from .base import FactCandidate, PersonaExtractor
from .llm import ExtractedFact, ExtractedFacts, LLMFactExtractor
from .repository import FactChanges, FactRepository
from .rules import RuleExtractor, extract_statements, first_person_sentences

__all__ = [
    "ExtractedFact",
    "ExtractedFacts",
    "FactCandidate",
    "FactChanges",
    "FactRepository",
    "LLMFactExtractor",
    "PersonaExtractor",
    "RuleExtractor",
    "extract_statements",
    "first_person_sentences",
]
