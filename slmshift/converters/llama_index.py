"""`swap_agent_models`: copies of LlamaIndex agents and workflows that use other LLMs.

`FunctionAgent` and `ReActAgent` are pydantic models, so a copy with a new `llm` comes from
`model_copy(update=...)`. `AgentWorkflow` is not, so a new one is built from its (copied)
agents and the original's settings. Originals are left intact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import AgentWorkflow
from llama_index.core.agent.workflow.base_agent import BaseWorkflowAgent
from llama_index.core.llms import LLM

logger = logging.getLogger(__name__)

LLMFactory = Callable[[LLM], LLM]


class AgentSwapError(ValueError):
    """A plan names an agent the workflow does not have, or a value that is not an LLM."""


def swap_agent_models(workflow_or_agent: Any, plan: Mapping[str, Any] | Any | str | Path) -> Any:
    """Return a copy of an `AgentWorkflow`, `FunctionAgent` or `ReActAgent` with new LLMs.

    Args:
        workflow_or_agent: The workflow or single agent to copy.
        plan: A mapping from agent name to a LlamaIndex LLM, a function `original_llm ->
            new_llm`, or a `NodePlan`; or a `ConversionPlan` or plan file path, whose node
            names are agent names.

    Raises:
        AgentSwapError: an agent named in the plan does not exist.
    """
    factories = _resolve(plan)
    if isinstance(workflow_or_agent, AgentWorkflow):
        return _swap_workflow(workflow_or_agent, factories)
    if isinstance(workflow_or_agent, BaseWorkflowAgent):
        _check_names(factories, [workflow_or_agent.name])
        return _swap_agent(workflow_or_agent, factories)
    raise TypeError(
        f"swap_agent_models takes an AgentWorkflow, FunctionAgent or ReActAgent, got "
        f"{type(workflow_or_agent).__name__}; for LangGraph use swap_node_models."
    )


def _swap_agent(agent: BaseWorkflowAgent, factories: dict[str, LLMFactory]) -> BaseWorkflowAgent:
    factory = factories.get(agent.name)
    if factory is None:
        return agent
    new_llm = factory(agent.llm)
    if not isinstance(new_llm, LLM):
        raise AgentSwapError(f"The plan for agent {agent.name!r} returned {type(new_llm).__name__}, not a LlamaIndex LLM.")
    return agent.model_copy(update={"llm": new_llm})


def _swap_workflow(workflow: AgentWorkflow, factories: dict[str, LLMFactory]) -> AgentWorkflow:
    _check_names(factories, list(workflow.agents))
    agents = [_swap_agent(agent, factories) for agent in workflow.agents.values()]
    return AgentWorkflow(
        agents=agents,
        initial_state=dict(workflow.initial_state),
        root_agent=workflow.root_agent,
        handoff_prompt=workflow.handoff_prompt,
        handoff_output_prompt=workflow.handoff_output_prompt,
        state_prompt=workflow.state_prompt,
        timeout=workflow._timeout,
        output_cls=workflow.output_cls,
        structured_output_fn=workflow.structured_output_fn,
        early_stopping_method=workflow.early_stopping_method,
        verbose=workflow._verbose,
        disable_validation=workflow._disable_validation,
        num_concurrent_runs=workflow._num_concurrent_runs,
    )


def _check_names(factories: dict[str, LLMFactory], names: list[str]) -> None:
    unknown = sorted(set(factories) - set(names))
    if unknown:
        raise AgentSwapError(f"Agents {unknown} not found; the agents are {sorted(names)}.")


def _resolve(plan: Any) -> dict[str, LLMFactory]:
    from slmshift.converters.plan import ConversionPlan, NodePlan

    if isinstance(plan, (str, Path)):
        plan = ConversionPlan.load(plan)
    if isinstance(plan, ConversionPlan):
        plan = {entry.node: entry for entry in plan.nodes}
    if not isinstance(plan, Mapping):
        raise TypeError(f"Invalid plan of type {type(plan).__name__}: pass a mapping of agent name to LLM.")
    factories: dict[str, LLMFactory] = {}
    for name, value in plan.items():
        if isinstance(value, LLM):
            factories[name] = lambda original, llm=value: llm
        elif isinstance(value, NodePlan):
            factories[name] = _plan_factory(value)
        elif callable(value):
            factories[name] = value
        else:
            raise AgentSwapError(f"Invalid plan value for agent {name!r}: {type(value).__name__}; use a LlamaIndex LLM.")
    return factories


def _plan_factory(entry: Any) -> LLMFactory:
    """Serve a plan entry's SLM as an `SLMLLM`.

    NOTE: fallback, shadow and canary modes exist only for LangChain models so far; a
    LlamaIndex agent swapped from a plan is served by the SLM alone.
    """
    from slmshift.integrations.llama_index import SLMLLM

    if entry.fallback.mode != "none":
        logger.warning("Agent %s: fallback mode %r is not available for LlamaIndex; the SLM serves alone.", entry.node, entry.fallback.mode)
    loaded: list[Any] = []

    def factory(original: LLM) -> LLM:
        if not loaded:
            chat_model = entry._build_slm()
            loaded.append(SLMLLM(generator=chat_model.generator, max_new_tokens=entry.max_new_tokens))
        return loaded[0]

    return factory
