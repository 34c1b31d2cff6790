"""slmshift: move the repetitive model calls of LangGraph and LlamaIndex agents to small models.

Framework integrations are imported lazily, so `import slmshift` needs only the core install.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "CallRecord": "slmshift.records",
    "FallbackChatModel": "slmshift.integrations.fallback",
    "LangChainTraceHandler": "slmshift.callbacks.langchain",
    "LlamaIndexTraceHandler": "slmshift.callbacks.llama_index",
    "Message": "slmshift.records",
    "NodeSwapError": "slmshift.converters.langgraph",
    "ConversionPlan": "slmshift.converters.plan",
    "ToolCall": "slmshift.records",
    "ToolDefinition": "slmshift.records",
    "TraceStore": "slmshift.store",
    "Usage": "slmshift.records",
    "swap_node_models": "slmshift.converters.langgraph",
}

__all__ = sorted([*_LAZY_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'slmshift' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
