"""Ordered handlers that rebuild one node's runnable with its chat models replaced.

Each handler recognises one shape of object (a chat model, a tool binding, a structured-output
sequence, an LCEL sequence, a function closing over a model, ...) and returns a rebuilt copy.
`NodeRewriter.visit` tries them in order and the first match wins; the generic handler, last,
returns anything else unchanged. Originals are never modified: closures get new cells, module
globals a copied mapping, objects a shallow copy, so the source graph and sibling nodes that
share a closure keep their models.

Tools (`BaseTool`, `ToolNode`) and agent middleware are never entered, so models that tools or
middleware use keep running on their own models.
"""

from __future__ import annotations

import copy
import functools
import logging
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableLambda,
    RunnableParallel,
    RunnableSequence,
    RunnableWithFallbacks,
)
from langchain_core.tools import BaseTool

from slmshift.integrations._lc_messages import tool_choice_name

logger = logging.getLogger(__name__)

ModelFactory = Callable[[BaseChatModel], BaseChatModel]

# Modules whose objects are never entered: agent middleware keeps its own models.
SKIPPED_MODULE_PREFIXES = ("langchain.agents.middleware",)
_STRUCTURED_KEY = "ls_structured_output_format"
_IN_PROGRESS = object()


class NodeSwapError(ValueError):
    """A node's model cannot be swapped statically; the message names the node and the alternative."""


@dataclass
class NodeRewriter:
    """Rewrites the objects reachable from one node, replacing chat models through `factory`.

    `subgraph_swapper` rewrites a compiled subgraph found inside the node (given the graph
    and the node path), or returns it unchanged when the plan names none of its nodes.
    """

    node_path: str
    factory: ModelFactory | None
    subgraph_swapper: Callable[[Any, str], Any]
    replaced: list[str] = field(default_factory=list)
    _memo: dict[int, Any] = field(default_factory=dict)
    _keep_alive: list[Any] = field(default_factory=list)

    def visit(self, value: Any, *, root: bool = False) -> Any:
        """Return `value` rebuilt with its models replaced, or `value` itself when nothing changed."""
        key = id(value)
        if key in self._memo:
            done = self._memo[key]
            return value if done is _IN_PROGRESS else done
        self._memo[key] = _IN_PROGRESS
        self._keep_alive.append(value)
        for handler in HANDLERS:
            if handler.matches(value, root):
                result = handler.rebuild(value, self)
                break
        else:  # pragma: no cover - the generic handler matches everything
            result = value
        self._memo[key] = result
        return result

    def replace_model(self, model: BaseChatModel) -> BaseChatModel:
        if self.factory is None:
            return model
        new_model = self.factory(model)
        self.replaced.append(type(model).__name__)
        return new_model


@dataclass(frozen=True)
class Handler:
    """One node shape: `matches` recognises it, `rebuild` returns the swapped copy."""

    name: str
    matches: Callable[[Any, bool], bool]
    rebuild: Callable[[Any, NodeRewriter], Any]


# -- shapes that are never entered ---------------------------------------------------------


def _is_skipped(value: Any, root: bool) -> bool:
    if isinstance(value, BaseTool) or type(value).__name__ == "ToolNode":
        return True
    module = getattr(type(value), "__module__", "") or ""
    return module.startswith(SKIPPED_MODULE_PREFIXES)


# -- models, bindings and LCEL -------------------------------------------------------------


def _is_compiled_graph(value: Any, root: bool) -> bool:
    try:
        from langgraph.pregel import Pregel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, Pregel)


def _rebuild_subgraph(graph: Any, rewriter: NodeRewriter) -> Any:
    return rewriter.subgraph_swapper(graph, rewriter.node_path)


def _rebuild_model(model: BaseChatModel, rewriter: NodeRewriter) -> BaseChatModel:
    return rewriter.replace_model(model)


def _is_tool_binding(value: Any, root: bool) -> bool:
    return (
        isinstance(value, RunnableBinding)
        and isinstance(value.bound, BaseChatModel)
        and "tools" in value.kwargs
        and _STRUCTURED_KEY not in value.kwargs
    )


def _rebuild_tool_binding(binding: RunnableBinding, rewriter: NodeRewriter) -> Runnable:
    """Bind the same tools and tool choice on the new model, in the new model's own format."""
    new_model = rewriter.visit(binding.bound)
    if new_model is binding.bound:
        return binding
    options = {key: value for key, value in binding.kwargs.items() if key not in ("tools", "tool_choice")}
    choice = tool_choice_name(binding.kwargs.get("tool_choice"))
    rebound = new_model.bind_tools(binding.kwargs["tools"], tool_choice=choice, **options)
    return _keep_binding_config(binding, rebound)


def _is_structured_sequence(value: Any, root: bool) -> bool:
    return isinstance(value, RunnableSequence) and _structured_index(value.steps) is not None


def _rebuild_structured_sequence(sequence: RunnableSequence, rewriter: NodeRewriter) -> Runnable:
    """Rebuild `model.with_structured_output(schema)` on the new model, keeping steps around it.

    The new model picks its own method: tool calling, or JSON mode with schema validation when
    it cannot call tools.
    """
    steps = list(sequence.steps)
    index = _structured_index(steps)
    assert index is not None
    binding, include_raw = _structured_binding(steps[index])
    new_model = rewriter.visit(binding.bound)
    if new_model is binding.bound:
        structured_steps = steps[index : index + 2]
    else:
        schema = binding.kwargs[_STRUCTURED_KEY].get("schema")
        if schema is None:
            raise NodeSwapError(
                f"Node {rewriter.node_path!r}: a with_structured_output binding carries no schema, so it "
                "cannot be rebuilt; call with_structured_output on the new model yourself."
            )
        structured_steps = [new_model.with_structured_output(schema, include_raw=include_raw)]
    before = [rewriter.visit(step) for step in steps[:index]]
    after = [rewriter.visit(step) for step in steps[index + 2 :]]
    return RunnableSequence(*before, *structured_steps, *after, name=sequence.name)


def _structured_index(steps: list[Any]) -> int | None:
    for index, step in enumerate(steps[:-1]):
        if _structured_binding(step)[0] is not None:
            return index
    return None


def _structured_binding(step: Any) -> tuple[Any, bool]:
    if isinstance(step, RunnableParallel) and set(step.steps__) == {"raw"}:
        return _structured_binding(step.steps__["raw"])[0], True
    if isinstance(step, RunnableBinding) and _STRUCTURED_KEY in step.kwargs and isinstance(step.bound, BaseChatModel):
        return step, False
    return None, False


def _rebuild_binding(binding: RunnableBinding, rewriter: NodeRewriter) -> Runnable:
    bound = rewriter.visit(binding.bound)
    return binding if bound is binding.bound else binding.model_copy(update={"bound": bound})


def _rebuild_sequence(sequence: RunnableSequence, rewriter: NodeRewriter) -> Runnable:
    steps = [rewriter.visit(step) for step in sequence.steps]
    if all(new is old for new, old in zip(steps, sequence.steps, strict=True)):
        return sequence
    return RunnableSequence(*steps, name=sequence.name)


def _rebuild_parallel(parallel: RunnableParallel, rewriter: NodeRewriter) -> Runnable:
    steps = {key: rewriter.visit(step) for key, step in parallel.steps__.items()}
    if all(steps[key] is step for key, step in parallel.steps__.items()):
        return parallel
    return parallel.model_copy(update={"steps__": steps})


def _rebuild_fallbacks(runnable: RunnableWithFallbacks, rewriter: NodeRewriter) -> Runnable:
    primary = rewriter.visit(runnable.runnable)
    fallbacks = [rewriter.visit(item) for item in runnable.fallbacks]
    if primary is runnable.runnable and all(new is old for new, old in zip(fallbacks, runnable.fallbacks, strict=True)):
        return runnable
    return runnable.model_copy(update={"runnable": primary, "fallbacks": fallbacks})


def _is_callable_runnable(value: Any, root: bool) -> bool:
    return isinstance(value, RunnableLambda) or type(value).__name__ == "RunnableCallable"


def _rebuild_callable_runnable(runnable: Any, rewriter: NodeRewriter) -> Any:
    """Copy a `RunnableLambda` or LangGraph `RunnableCallable` with its functions rebuilt."""
    func = getattr(runnable, "func", None)
    afunc = getattr(runnable, "afunc", None)
    new_func = rewriter.visit(func, root=True) if func is not None else None
    new_afunc = rewriter.visit(afunc, root=True) if afunc is not None else None
    if new_func is func and new_afunc is afunc:
        return runnable
    clone = copy.copy(runnable)
    clone.func = new_func
    clone.afunc = new_afunc
    return clone


# -- Python callables ----------------------------------------------------------------------


def _rebuild_function(func: types.FunctionType, rewriter: NodeRewriter) -> types.FunctionType:
    """Build a new function with new closure cells, a copied globals mapping and new defaults.

    Only cells, globals and defaults that hold something with a model get new values; the
    original function and every function sharing its cells are left as they were.
    """
    closure = _rebuild_closure(func, rewriter)
    globals_ = _rebuild_globals(func, rewriter)
    defaults = _rebuild_sequence_values(func.__defaults__, rewriter)
    kwdefaults = _rebuild_mapping_values(func.__kwdefaults__, rewriter)
    if closure is func.__closure__ and globals_ is func.__globals__ and defaults is func.__defaults__ and kwdefaults is func.__kwdefaults__:
        return func

    new_func = types.FunctionType(func.__code__, globals_, func.__name__, defaults, closure)
    new_func.__kwdefaults__ = kwdefaults
    new_func.__dict__.update(func.__dict__)
    for attribute in ("__qualname__", "__annotations__", "__module__", "__doc__"):
        setattr(new_func, attribute, getattr(func, attribute))
    return new_func


def _rebuild_closure(func: types.FunctionType, rewriter: NodeRewriter) -> tuple[Any, ...] | None:
    if not func.__closure__:
        return func.__closure__
    cells = []
    changed = False
    for cell in func.__closure__:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (a variable assigned later)
            cells.append(cell)
            continue
        new_value = rewriter.visit(value)
        if new_value is value:
            cells.append(cell)
        else:
            cells.append(types.CellType(new_value))
            changed = True
    return tuple(cells) if changed else func.__closure__


def _rebuild_globals(func: types.FunctionType, rewriter: NodeRewriter) -> dict[str, Any]:
    """Copy the globals mapping with module-level models replaced.

    NOTE: the copy is a snapshot. Later assignments to module globals are not seen by the new
    function, and module-level helpers the node calls still use the original model.
    """
    replacements = {}
    for name in _global_names(func.__code__):
        if name not in func.__globals__:
            continue
        value = func.__globals__[name]
        if not _may_hold_model(value):
            continue
        new_value = rewriter.visit(value)
        if new_value is not value:
            replacements[name] = new_value
    if not replacements:
        return func.__globals__
    return {**func.__globals__, **replacements}


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _global_names(constant)


def _may_hold_model(value: Any) -> bool:
    return isinstance(value, (BaseChatModel, Runnable, functools.partial)) or _is_compiled_graph(value, False)


def _rebuild_method(method: types.MethodType, rewriter: NodeRewriter) -> Any:
    """Bind the (rebuilt) function to a shallow copy of the instance with model attributes replaced."""
    func = rewriter.visit(method.__func__)
    instance = _rebuild_object_attributes(method.__self__, rewriter)
    if func is method.__func__ and instance is method.__self__:
        return method
    return types.MethodType(func, instance)


def _is_callable_object(value: Any, root: bool) -> bool:
    return root and callable(value) and hasattr(value, "__dict__") and not isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType))


def _rebuild_callable_object(value: Any, rewriter: NodeRewriter) -> Any:
    return _rebuild_object_attributes(value, rewriter)


def _rebuild_object_attributes(instance: Any, rewriter: NodeRewriter) -> Any:
    attributes = getattr(instance, "__dict__", None)
    if not isinstance(attributes, dict) or _is_skipped(instance, False):
        return instance
    replacements = {}
    for name, value in attributes.items():
        new_value = rewriter.visit(value)
        if new_value is not value:
            replacements[name] = new_value
    if not replacements:
        return instance
    clone = copy.copy(instance)
    for name, value in replacements.items():
        object.__setattr__(clone, name, value)
    return clone


def _rebuild_partial(partial: functools.partial, rewriter: NodeRewriter) -> functools.partial:
    func = rewriter.visit(partial.func, root=True)
    args = _rebuild_sequence_values(partial.args, rewriter)
    keywords = _rebuild_mapping_values(partial.keywords, rewriter)
    if func is partial.func and args is partial.args and keywords is partial.keywords:
        return partial
    return type(partial)(func, *args, **keywords)


def _rebuild_container(value: Any, rewriter: NodeRewriter) -> Any:
    if isinstance(value, dict):
        return _rebuild_mapping_values(value, rewriter)
    items = tuple(value)
    new_items = _rebuild_sequence_values(items, rewriter)
    if new_items is items:
        return value
    return type(value)(new_items)


def _rebuild_sequence_values(values: tuple[Any, ...] | None, rewriter: NodeRewriter) -> tuple[Any, ...] | None:
    if not values:
        return values
    new_values = tuple(rewriter.visit(value) for value in values)
    return values if all(new is old for new, old in zip(new_values, values, strict=True)) else new_values


def _rebuild_mapping_values(values: dict[str, Any] | None, rewriter: NodeRewriter) -> dict[str, Any] | None:
    if not values:
        return values
    new_values = {key: rewriter.visit(value) for key, value in values.items()}
    return values if all(new_values[key] is value for key, value in values.items()) else new_values


def _keep_binding_config(original: RunnableBinding, rebound: Runnable) -> Runnable:
    if original.config:
        return rebound.with_config(original.config)
    return rebound


def _unchanged(value: Any, rewriter: NodeRewriter) -> Any:
    return value


HANDLERS: tuple[Handler, ...] = (
    Handler("tool or agent middleware (left unchanged)", _is_skipped, _unchanged),
    Handler("compiled subgraph (create_react_agent, create_agent, nested StateGraph)", _is_compiled_graph, _rebuild_subgraph),
    Handler("chat model", lambda value, root: isinstance(value, BaseChatModel), _rebuild_model),
    Handler("model.bind_tools(...)", _is_tool_binding, _rebuild_tool_binding),
    Handler("model.with_structured_output(...)", _is_structured_sequence, _rebuild_structured_sequence),
    Handler("runnable binding (bind, with_config, with_retry)", lambda value, root: isinstance(value, RunnableBinding), _rebuild_binding),
    Handler("LCEL sequence (prompt | model | parser)", lambda value, root: isinstance(value, RunnableSequence), _rebuild_sequence),
    Handler("LCEL parallel map", lambda value, root: isinstance(value, RunnableParallel), _rebuild_parallel),
    Handler("runnable with fallbacks", lambda value, root: isinstance(value, RunnableWithFallbacks), _rebuild_fallbacks),
    Handler("function node (sync or async)", _is_callable_runnable, _rebuild_callable_runnable),
    Handler("function closing over a model or using a module-level model", lambda value, root: isinstance(value, types.FunctionType), _rebuild_function),
    Handler("bound method", lambda value, root: root and isinstance(value, types.MethodType), _rebuild_method),
    Handler("functools.partial", lambda value, root: isinstance(value, functools.partial), _rebuild_partial),
    Handler("callable object", _is_callable_object, _rebuild_callable_object),
    Handler("list, tuple or dict of the above", lambda value, root: type(value) in (list, tuple, dict), _rebuild_container),
    Handler("anything else (left unchanged)", lambda value, root: True, _unchanged),
)

SUPPORTED_SHAPES = tuple(handler.name for handler in HANDLERS if "unchanged" not in handler.name)
