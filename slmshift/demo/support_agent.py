"""The example support agent: a LangGraph graph with a router, a tool caller and a responder.

A request enters with its `kind`. Banking requests (BANKING77) go to the `router`, which
classifies them into one of the 77 intents, then to the `responder`, which writes a short
reply. Function-calling questions (BFCL) go to the `tool_caller`, which answers with calls of
the functions the request offers. The models are captured in the node functions' closures,
the way users usually write them: an LCEL `prompt | model` chain in the router, a
`model.bind_tools(...)` inside the tool node and a plain `model.invoke` in the responder.

`replay_teacher` builds the three models as `ReplayChatModel`s that answer with the datasets'
recorded labels and calls, since no hosted LLM can be reached here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph

from slmshift.demo.datasets import (
    FunctionCallExample,
    IntentExample,
    banking77_labels,
    bfcl_function_to_tool,
    load_banking77,
    load_bfcl,
)
from slmshift.demo.prompts import (
    RESPONDER_NODE,
    RESPONDER_SYSTEM_PROMPT,
    ROUTER_NODE,
    TOOL_NODE,
    TOOL_SYSTEM_PROMPT,
    router_system_prompt,
)
from slmshift.demo.replay import ReplayChatModel

logger = logging.getLogger(__name__)

RequestKind = Literal["banking", "function_call"]


class SupportState(TypedDict, total=False):
    """State of one support request as it moves through the graph."""

    kind: RequestKind
    request: str
    messages: list[dict[str, str]]
    tools: list[dict[str, Any]]
    intent: str
    tool_calls: list[dict[str, Any]]
    reply: str


class SupportTeacher(NamedTuple):
    """The three models of the support agent, one per node."""

    router: BaseChatModel
    tool_caller: BaseChatModel
    responder: BaseChatModel


def build_support_graph(
    router_model: BaseChatModel,
    tool_model: BaseChatModel,
    responder_model: BaseChatModel,
    *,
    labels: Sequence[str] | None = None,
) -> StateGraph:
    """Build the support agent's graph, uncompiled, with the given model in each node.

    `labels` are the router's intents (default: the 77 BANKING77 intents).
    """
    router_prompt = ChatPromptTemplate.from_messages(
        [("system", router_system_prompt(labels or banking77_labels())), ("human", "{request}")]
    )
    classify = router_prompt | router_model | StrOutputParser()

    def route(state: SupportState) -> dict[str, Any]:
        return {"intent": classify.invoke({"request": state["request"]}).strip()}

    def call_tools(state: SupportState) -> dict[str, Any]:
        model = tool_model.bind_tools(state["tools"])
        reply = model.invoke(_tool_messages(state))
        return {"tool_calls": list(reply.tool_calls), "reply": reply.text}

    def respond(state: SupportState) -> dict[str, Any]:
        messages = [
            SystemMessage(RESPONDER_SYSTEM_PROMPT),
            HumanMessage(responder_request(state["request"], state["intent"])),
        ]
        return {"reply": responder_model.invoke(messages).text}

    graph = StateGraph(SupportState)
    graph.add_node(ROUTER_NODE, route)
    graph.add_node(TOOL_NODE, call_tools)
    graph.add_node(RESPONDER_NODE, respond)
    graph.add_conditional_edges(START, _entry_node, [ROUTER_NODE, TOOL_NODE])
    graph.add_edge(ROUTER_NODE, RESPONDER_NODE)
    graph.add_edge(RESPONDER_NODE, END)
    graph.add_edge(TOOL_NODE, END)
    return graph


def responder_request(request: str, intent: str) -> str:
    """Return the responder's user message for a classified banking request."""
    return f"Customer request: {request}\nIntent: {intent}"


def banking_input(example: IntentExample) -> SupportState:
    """Return the graph input for one BANKING77 request."""
    return {"kind": "banking", "request": example.text}


def function_call_input(example: FunctionCallExample) -> SupportState:
    """Return the graph input for one BFCL question, with its functions as OpenAI tools."""
    user_turns = [m["content"] for m in example.messages if m["role"] == "user"]
    return {
        "kind": "function_call",
        "request": user_turns[-1] if user_turns else "",
        "messages": example.messages,
        "tools": [bfcl_function_to_tool(function) for function in example.functions],
    }


def replay_teacher(
    *,
    banking: Sequence[IntentExample] | None = None,
    bfcl: Sequence[FunctionCallExample] | None = None,
    latency_ms: float = 0.0,
) -> SupportTeacher:
    """Build replay models answering with the datasets' recorded labels and calls.

    The router replays BANKING77 intents; the tool caller replays BFCL ground-truth calls,
    taking the first acceptable value of each parameter and omitting parameters whose
    acceptable values start with `""` (optional ones). The datasets hold no replies, so the
    responder answers with a fixed reply per intent. Defaults: the BANKING77 training split and
    the four single-turn BFCL categories.
    """
    banking = load_banking77("train") if banking is None else banking
    bfcl = load_bfcl() if bfcl is None else bfcl

    router_answers = {example.text.strip(): example.label for example in banking}
    tool_answers = {function_call_input(example)["request"].strip(): recorded_calls(example) for example in bfcl}
    responder_answers = {
        responder_request(example.text, example.label).strip(): intent_reply(example.label)
        for example in banking
    }
    return SupportTeacher(
        router=ReplayChatModel(answers=router_answers, model_name="replay-router", latency_ms=latency_ms),
        tool_caller=ReplayChatModel(answers=tool_answers, model_name="replay-tool-caller", latency_ms=latency_ms),
        responder=ReplayChatModel(answers=responder_answers, model_name="replay-responder", latency_ms=latency_ms),
    )


def recorded_calls(example: FunctionCallExample) -> AIMessage:
    """Return BFCL's ground truth for `example` as an `AIMessage` with tool calls."""
    calls = []
    for index, expected in enumerate(example.ground_truth):
        for name, parameters in expected.items():
            arguments = {
                parameter: values[0]
                for parameter, values in parameters.items()
                if values and values[0] != ""
            }
            calls.append({"name": name, "args": arguments, "id": f"call_{example.id}_{index}", "type": "tool_call"})
    return AIMessage(content="", tool_calls=calls)


def intent_reply(intent: str) -> str:
    """Return the responder's replayed reply for `intent`: a short, fixed answer."""
    topic = intent.replace("_", " ")
    return (
        f"Thanks for reaching out about {topic}. I have passed your request to the right team, "
        "and you will hear back from us within one business day."
    )


def _entry_node(state: SupportState) -> str:
    kind = state.get("kind")
    if kind == "banking":
        return ROUTER_NODE
    if kind == "function_call":
        return TOOL_NODE
    raise ValueError(
        f"Invalid request kind {kind!r}: set state['kind'] to 'banking' or 'function_call'."
    )


def _tool_messages(state: SupportState) -> list[BaseMessage]:
    messages: list[BaseMessage] = [SystemMessage(TOOL_SYSTEM_PROMPT)]
    for message in state.get("messages") or [{"role": "user", "content": state["request"]}]:
        if message["role"] == "system":
            messages.append(SystemMessage(message["content"]))
        elif message["role"] == "assistant":
            messages.append(AIMessage(message["content"]))
        else:
            messages.append(HumanMessage(message["content"]))
    return messages


def run_support_agent(
    store: Any,
    *,
    banking: Sequence[IntentExample],
    bfcl: Sequence[FunctionCallExample],
    teacher: SupportTeacher | None = None,
    agent: str = "support-bot",
    redactor: Any = None,
    on_request: Any = None,
) -> int:
    """Run every request through the support agent with capture into `store`; return the count.

    The teacher defaults to `replay_teacher` on the same requests. `on_request` is called with
    the number of requests run so far.
    """
    from slmshift.callbacks.langchain import LangChainTraceHandler

    teacher = teacher or replay_teacher(banking=banking, bfcl=bfcl)
    graph = build_support_graph(*teacher).compile()
    handler = LangChainTraceHandler(store, agent=agent, redactor=redactor)
    config = {"callbacks": [handler]}

    inputs = [banking_input(example) for example in banking]
    inputs += [function_call_input(example) for example in bfcl]
    for index, state in enumerate(inputs, start=1):
        graph.invoke(state, config=config)
        if on_request is not None:
            on_request(index)
    handler.flush()
    return len(inputs)
