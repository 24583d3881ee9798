"""Integrations with host frameworks (``personalize.integrations``).

- ``personalize.integrations.llama_index``: retriever, node postprocessor, memory block.
- ``personalize.integrations.langgraph``: graph factory, Studio entry point, store adapter.
"""
