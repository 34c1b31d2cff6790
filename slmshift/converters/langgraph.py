"""`swap_node_models`: a copy of a LangGraph graph whose chosen nodes call other chat models.

The copy keeps everything else: edges, conditional edges, state schema, checkpointer, store,
cache, interrupts, retry and cache policies and graph config. For a compiled graph no
recompilation happens (a copied builder gets new node specs, and the compiled graph's own
`copy` gets new `PregelNode`s), so a thread paused on the original graph resumes on the copy
through the shared checkpointer.

Inside each node, the ordered handlers of `slmshift.converters._handlers` find and replace the
chat models. A node whose model cannot be found statically raises `NodeSwapError`; such nodes
can read their model through `slmshift.converters.overrides.node_model` and be redirected at
run time with `with_model_overrides`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from slmshift.converters._handlers import (
    SUPPORTED_SHAPES,
    ModelFactory,
    NodeRewriter,
    NodeSwapError,
)

logger = logging.getLogger(__name__)

GraphT = TypeVar("GraphT", StateGraph, Pregel)
PlanLike = Mapping[str, Any] | Any | str | Path

__all__ = ["NodeSwapError", "SUPPORTED_SHAPES", "resolve_plan", "swap_node_models"]

_MODEL_BUILDER_NAMES = ("init_chat_model",)


def swap_node_models(graph: GraphT, plan: PlanLike, *, store: Any = None) -> GraphT:
    """Return a copy of `graph` whose planned nodes call new chat models; `graph` is unchanged.

    Args:
        graph: A `StateGraph` or a compiled graph (including `create_react_agent` and
            `create_agent` graphs).
        plan: A mapping from node path (`node`, or `outer/inner` inside subgraphs) to a chat
            model, a function `original_model -> new_model`, or a `NodePlan`; or a
            `ConversionPlan`; or the path of a plan file.
        store: Where `FallbackChatModel`s built from a `ConversionPlan` record their decisions.

    Raises:
        NodeSwapError: a planned node does not exist, is a subgraph named without its inner
            node, or holds no model that can be replaced statically.
    """
    targets = resolve_plan(plan, store=store)
    if not targets:
        raise NodeSwapError("The plan names no nodes: add at least one `node: model` entry.")
    if isinstance(graph, StateGraph):
        return _swap_state_graph(graph, targets, prefix="")
    if isinstance(graph, Pregel):
        return _swap_compiled(graph, targets, prefix="")
    raise TypeError(
        f"swap_node_models takes a StateGraph or a compiled graph, got {type(graph).__name__}; "
        "for LlamaIndex agents use slmshift.converters.llama_index.swap_agent_models."
    )


def resolve_plan(plan: PlanLike, *, store: Any = None) -> dict[str, ModelFactory]:
    """Turn any accepted plan form into `{node path: original model -> new model}`."""
    from slmshift.converters.plan import ConversionPlan, NodePlan

    if isinstance(plan, (str, Path)):
        plan = ConversionPlan.load(plan)
    if isinstance(plan, ConversionPlan):
        return plan.model_factories(store=store)
    if not isinstance(plan, Mapping):
        raise TypeError(
            f"Invalid plan of type {type(plan).__name__}: pass a mapping of node to model, "
            "a ConversionPlan or a plan file path."
        )
    factories: dict[str, ModelFactory] = {}
    for path, value in plan.items():
        if isinstance(value, BaseChatModel):
            factories[path] = _constant(value)
        elif isinstance(value, NodePlan):
            factories[path] = value.model_factory(store=store)
        elif callable(value):
            factories[path] = value
        else:
            raise TypeError(
                f"Invalid plan value for node {path!r}: {type(value).__name__}. Use a chat model, "
                "a function original_model -> new_model, or a NodePlan."
            )
    return factories


def _constant(model: BaseChatModel) -> ModelFactory:
    return lambda original: model


# -- graphs --------------------------------------------------------------------------------


def _swap_state_graph(builder: StateGraph, targets: dict[str, Any], *, prefix: str) -> StateGraph:
    direct, nested = _split_targets(targets, list(builder.nodes), prefix)
    subgraphs: dict[int, Any] = {}
    runnables = {
        name: _swap_node(name, builder.nodes[name].runnable, direct.get(name), nested.get(name), prefix, subgraphs)
        for name in sorted(set(direct) | set(nested))
    }
    return _copy_builder(builder, runnables)


def _swap_compiled(compiled: Pregel, targets: dict[str, Any], *, prefix: str) -> Pregel:
    names = [name for name in compiled.nodes if not name.startswith("__")]
    direct, nested = _split_targets(targets, names, prefix)
    subgraphs: dict[int, Any] = {}
    runnables = {
        name: _swap_node(name, compiled.nodes[name].bound, direct.get(name), nested.get(name), prefix, subgraphs)
        for name in sorted(set(direct) | set(nested))
    }

    nodes = dict(compiled.nodes)
    for name, runnable in runnables.items():
        node = compiled.nodes[name]
        new_subgraphs = [subgraphs.get(id(graph), graph) for graph in node.subgraphs or ()]
        nodes[name] = node.copy({"bound": runnable, "subgraphs": new_subgraphs})
    update: dict[str, Any] = {"nodes": nodes}
    builder = getattr(compiled, "builder", None)
    if isinstance(builder, StateGraph):
        update["builder"] = _copy_builder(builder, _builder_runnables(builder, compiled, runnables))
    new_graph = compiled.copy(update)
    new_graph.validate()
    return new_graph


def _builder_runnables(builder: StateGraph, compiled: Pregel, runnables: dict[str, Any]) -> dict[str, Any]:
    """Map the new node runnables onto builder specs that hold the same original runnable."""
    result = {}
    for name, runnable in runnables.items():
        spec = builder.nodes.get(name)
        if spec is not None and spec.runnable is compiled.nodes[name].bound:
            result[name] = runnable
        elif spec is not None:
            logger.warning(
                "Node %r of the compiled graph differs from its builder spec; the builder copy keeps "
                "the original runnable, so recompiling the copied builder would undo the swap.",
                name,
            )
    return result


def _copy_builder(builder: StateGraph, runnables: dict[str, Any]) -> StateGraph:
    """Copy the builder and its containers, so that editing the copy never edits the original."""
    clone = copy.copy(builder)
    for attribute, value in vars(builder).items():
        if attribute == "branches":
            copied = copy.copy(value)
            for key, branches in value.items():
                copied[key] = dict(branches)
            setattr(clone, attribute, copied)
        elif isinstance(value, (dict, set, list)):
            setattr(clone, attribute, copy.copy(value))
    for name, runnable in runnables.items():
        clone.nodes[name] = dataclasses.replace(builder.nodes[name], runnable=runnable)
    return clone


def _split_targets(
    targets: dict[str, Any], names: list[str], prefix: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, factory in targets.items():
        head, _, rest = path.partition("/")
        if head not in names:
            raise NodeSwapError(
                f"Node {prefix + head!r} not found in the graph; its nodes are {sorted(names)}. "
                "Name subgraph nodes as outer/inner."
            )
        if rest:
            nested.setdefault(head, {})[rest] = factory
        else:
            direct[head] = factory
    return direct, nested


# -- nodes ---------------------------------------------------------------------------------


def _swap_node(
    name: str,
    runnable: Any,
    factory: ModelFactory | None,
    nested: dict[str, Any] | None,
    prefix: str,
    subgraphs: dict[int, Any],
) -> Any:
    path = prefix + name
    if factory is not None and isinstance(runnable, Pregel):
        inner = sorted(node for node in runnable.nodes if not node.startswith("__"))
        raise NodeSwapError(
            f"Node {path!r} is a subgraph, so it has no model of its own: name the inner node "
            f"that calls the model, one of {[f'{path}/{node}' for node in inner]}."
        )

    used_nested: list[bool] = []

    def swap_subgraph(graph: Pregel, node_path: str) -> Pregel:
        if not nested:
            return graph
        used_nested.append(True)
        new_graph = _swap_compiled(graph, nested, prefix=f"{node_path}/")
        subgraphs[id(graph)] = new_graph
        return new_graph

    rewriter = NodeRewriter(node_path=path, factory=factory, subgraph_swapper=swap_subgraph)
    new_runnable = rewriter.visit(runnable, root=True)
    if factory is not None and not rewriter.replaced:
        raise NodeSwapError(_explain_unswappable(path, runnable))
    if nested and not used_nested:
        raise NodeSwapError(
            f"Node {path!r} contains no subgraph, so the plan entries {sorted(f'{path}/{key}' for key in nested)} "
            "cannot be applied: name the node itself."
        )
    logger.info("Swapped node %s (%d model references).", path, len(rewriter.replaced))
    return new_runnable


def _explain_unswappable(path: str, runnable: Any) -> str:
    reason = _model_built_in_body(runnable)
    if reason is None:
        reason = "no chat model was found in its closure, module globals, defaults, attributes or runnables"
    shapes = "; ".join(SUPPORTED_SHAPES)
    return (
        f"Cannot swap the model of node {path!r}: {reason}. Supported node shapes: {shapes}. "
        "Alternative: read the model inside the node with "
        "`slmshift.converters.overrides.node_model(default_model)` and redirect it at run time with "
        f"`with_model_overrides(graph, {{{path!r}: new_model}})`."
    )


def _model_built_in_body(runnable: Any) -> str | None:
    """Name the model classes or builders a node function calls in its body, if any."""
    for func in _node_functions(runnable):
        globals_ = getattr(func, "__globals__", {})
        code = getattr(func, "__code__", None)
        if code is None:
            continue
        builders = [
            name
            for name in code.co_names
            if name in _MODEL_BUILDER_NAMES
            or (isinstance(globals_.get(name), type) and issubclass(globals_[name], BaseChatModel))
        ]
        if builders:
            return f"it builds its chat model inside the node body on each call ({', '.join(sorted(set(builders)))})"
    return None


def _node_functions(runnable: Any) -> list[Callable[..., Any]]:
    functions = []
    for attribute in ("func", "afunc"):
        func = getattr(runnable, attribute, None)
        if isinstance(func, types.MethodType):
            func = func.__func__
        if isinstance(func, types.FunctionType):
            functions.append(func)
    return functions
