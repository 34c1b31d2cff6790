"""Run-time model overrides for nodes whose model cannot be swapped statically.

A node that builds its chat model inside its body on every call has no model object for
`swap_node_models` to replace. Such a node reads its model through `node_model`:

    def summarise(state):
        model = node_model(ChatOpenAI(model="gpt-4.1"))
        return {"summary": model.invoke(state["text"]).content}

and `with_model_overrides(graph, {"summarise": slm})` returns a graph whose runs pass the
overrides in `config["configurable"]`, keyed by node path (`outer/inner` in subgraphs).
LangGraph copies a graph-level `configurable` into every node's config, which `node_model`
reads through `langgraph.config.get_config`. Without an override, or outside a graph run,
`node_model` returns the default model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

logger = logging.getLogger(__name__)

OVERRIDES_KEY = "slmshift_model_overrides"


def with_model_overrides(graph: Any, overrides: Mapping[str, Any] | Any, *, store: Any = None) -> Any:
    """Return `graph.with_config(...)` carrying `overrides` for `node_model` to read.

    `overrides` takes the same forms as the plan of `swap_node_models`: a mapping from node path
    to a chat model, a function `default_model -> new_model` or a `NodePlan`; a
    `ConversionPlan`; or a plan file path. Functions are called with the node's default model
    on each call, so they must be cheap (plan entries load their SLM once and reuse it).
    """
    from slmshift.converters.langgraph import resolve_plan

    factories = resolve_plan(overrides, store=store)
    return graph.with_config(configurable={OVERRIDES_KEY: factories})


def node_model(default: BaseChatModel, *, node: str | None = None) -> BaseChatModel:
    """Return the override for the calling node, or `default` when there is none.

    `node` names the node path explicitly; by default it comes from LangGraph's run metadata.
    """
    try:
        from langgraph.config import get_config

        config = get_config()
    except (ImportError, RuntimeError):
        return default
    factories = (config.get("configurable") or {}).get(OVERRIDES_KEY)
    if not factories:
        return default

    from slmshift.integrations.fallback import node_path_from_metadata

    path = node or node_path_from_metadata(config.get("metadata") or {})
    factory = factories.get(path)
    if factory is None:
        return default
    logger.debug("Node %s uses its overridden model.", path)
    return factory(default)
