"""swap_node_models on real LangGraph graphs, one test per node shape and per preserved property.

The original LLM is `ScriptedChatModel` (a hosted model cannot run here); the SLM side is
`SLMChatModel` over scripted generators here, and over a tiny trained local model in
tests/test_slm_models.py.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, RetryPolicy, interrupt
from pydantic import BaseModel

from fakes_swap import ScriptedChatModel, ScriptedGenerator, constant_generator
from slmshift.converters.langgraph import NodeSwapError, swap_node_models
from slmshift.converters.overrides import node_model, with_model_overrides
from slmshift.integrations.fallback import FallbackChatModel
from slmshift.integrations.langchain import SLMChatModel
from slmshift.records import Message, ToolCall
from slmshift.slm.base import Generation
from slmshift.store.base import MemoryTraceStore


class State(TypedDict, total=False):
    text: str
    label: str
    route: str


class Label(BaseModel):
    label: str


@tool
def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


def slm_saying(text: str, **options) -> SLMChatModel:
    return SLMChatModel(generator=constant_generator(text, **options))


def one_node_graph(node) -> StateGraph:
    graph = StateGraph(State)
    graph.add_node("classify", node)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", END)
    return graph


def closure_nodes(model):
    def classify(state: State) -> State:
        return {"label": model.invoke(state["text"]).content}

    def audit(state: State) -> State:
        return {"route": model.invoke(state["text"]).content}

    return classify, audit


GLOBAL_LLM = ScriptedChatModel(responses=["global-llm"])


def module_level_node(state: State) -> State:
    return {"label": GLOBAL_LLM.invoke(state["text"]).content}


# -- node shapes ---------------------------------------------------------------------------


def test_closure_node_swaps_and_sibling_stays():
    llm = ScriptedChatModel(responses=["llm"])
    classify, audit = closure_nodes(llm)
    graph = StateGraph(State)
    graph.add_node("classify", classify)
    graph.add_node("audit", audit)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "audit")
    graph.add_edge("audit", END)
    app = graph.compile()

    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"}) == {"text": "hi", "label": "slm", "route": "llm"}
    assert app.invoke({"text": "hi"}) == {"text": "hi", "label": "llm", "route": "llm"}
    assert classify.__closure__[0].cell_contents is llm
    assert audit.__closure__[0].cell_contents is llm


def test_module_level_model_swaps_through_copied_globals():
    app = one_node_graph(module_level_node).compile()

    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"})["label"] == "slm"
    assert app.invoke({"text": "hi"})["label"] == "global-llm"
    assert module_level_node.__globals__["GLOBAL_LLM"] is GLOBAL_LLM


def test_lcel_node_swaps_model_inside_pipeline():
    llm = ScriptedChatModel(responses=["llm"])
    prompt = ChatPromptTemplate.from_messages([("system", "Classify."), ("human", "{text}")])
    chain = prompt | llm | StrOutputParser() | RunnableLambda(lambda text: {"label": text})
    app = one_node_graph(chain).compile()

    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"})["label"] == "slm"
    assert app.invoke({"text": "hi"})["label"] == "llm"
    assert chain.steps[1] is llm


def test_bind_tools_rebinds_tools_and_choice_on_new_model():
    llm = ScriptedChatModel(responses=["llm"])
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")

    def agent(state: State) -> State:
        message = bound.invoke(state["text"])
        return {"label": message.tool_calls[0]["name"] if message.tool_calls else message.content}

    def answer(messages, tools):
        call = ToolCall(name=tools[0].name, arguments={"city": "Paris"}, id="call_1")
        return Generation(message=Message(role="assistant", content="", tool_calls=(call,)), confidence=0.8)

    generator = ScriptedGenerator(answer)
    swapped = swap_node_models(one_node_graph(agent).compile(), {"classify": SLMChatModel(generator=generator)})

    assert swapped.invoke({"text": "weather in Paris?"})["label"] == "get_weather"
    assert [tool.name for tool in generator.calls[0]["tools"]] == ["get_weather"]
    assert generator.calls[0]["tools"][0].parameters["required"] == ["city"]
    assert bound.bound is llm


def test_structured_output_without_tool_calling_uses_json_mode():
    llm = ScriptedChatModel(responses=["unused"])
    structured = llm.with_structured_output(Label)

    def classify(state: State) -> State:
        return {"label": structured.invoke(state["text"]).label}

    generator = ScriptedGenerator(lambda messages, tools: '{"label": "refund"}', supports_tools=False)
    swapped = swap_node_models(one_node_graph(classify).compile(), {"classify": SLMChatModel(generator=generator)})

    assert swapped.invoke({"text": "money back"})["label"] == "refund"
    system = generator.calls[0]["messages"][0]
    assert system.role == "system"
    assert '"label"' in system.text
    assert generator.calls[0]["tools"] is None


def test_structured_output_rejects_json_outside_schema():
    structured = ScriptedChatModel(responses=["unused"]).with_structured_output(Label)
    node = RunnableLambda(lambda state: {"label": structured.invoke(state["text"]).label})
    generator = ScriptedGenerator(lambda messages, tools: '{"category": 3}', supports_tools=False)
    swapped = swap_node_models(one_node_graph(node).compile(), {"classify": SLMChatModel(generator=generator)})

    with pytest.raises(Exception, match="does not match the schema"):
        swapped.invoke({"text": "money back"})


def test_structured_output_with_tool_calling_slm():
    structured = ScriptedChatModel(responses=["unused"]).with_structured_output(Label, include_raw=True)

    def classify(state: State) -> State:
        return {"label": structured.invoke(state["text"])["parsed"].label}

    def answer(messages, tools):
        call = ToolCall(name="Label", arguments={"label": "billing"}, id="call_1")
        return Generation(message=Message(role="assistant", content="", tool_calls=(call,)))

    swapped = swap_node_models(
        one_node_graph(classify).compile(), {"classify": SLMChatModel(generator=ScriptedGenerator(answer))}
    )

    assert swapped.invoke({"text": "invoice"})["label"] == "billing"


class Classifier:
    def __init__(self, model):
        self.model = model
        self.prefix = "label:"

    def classify(self, state: State) -> State:
        return {"label": self.prefix + self.model.invoke(state["text"]).content}

    def __call__(self, state: State) -> State:
        return self.classify(state)


def test_bound_method_node_swaps_on_instance_copy():
    llm = ScriptedChatModel(responses=["llm"])
    classifier = Classifier(llm)
    app = one_node_graph(classifier.classify).compile()

    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"})["label"] == "label:slm"
    assert classifier.model is llm
    assert app.invoke({"text": "hi"})["label"] == "label:llm"


def test_callable_object_node_swaps():
    llm = ScriptedChatModel(responses=["llm"])
    classifier = Classifier(llm)
    app = one_node_graph(classifier).compile()

    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"})["label"] == "label:slm"
    assert classifier.model is llm


def partial_node(state: State, *, model) -> State:
    return {"label": model.invoke(state["text"]).content}


def test_partial_node_swaps_keyword_model():
    llm = ScriptedChatModel(responses=["llm"])
    node = functools.partial(partial_node, model=llm)
    app = one_node_graph(node).compile()

    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"})["label"] == "slm"
    assert node.keywords["model"] is llm


def test_async_node_swaps():
    llm = ScriptedChatModel(responses=["llm"])

    async def classify(state: State) -> State:
        message = await llm.ainvoke(state["text"])
        return {"label": message.content}

    app = one_node_graph(classify).compile()
    swapped = swap_node_models(app, {"classify": slm_saying("slm")})

    assert asyncio.run(swapped.ainvoke({"text": "hi"}))["label"] == "slm"
    assert asyncio.run(app.ainvoke({"text": "hi"}))["label"] == "llm"


def test_subgraph_node_swaps_by_path():
    llm = ScriptedChatModel(responses=["llm"])
    classify, _ = closure_nodes(llm)
    inner = one_node_graph(classify).compile()
    outer = StateGraph(State)
    outer.add_node("triage", inner)
    outer.add_edge(START, "triage")
    outer.add_edge("triage", END)
    app = outer.compile()

    swapped = swap_node_models(app, {"triage/classify": slm_saying("slm")})

    assert swapped.invoke({"text": "hi"})["label"] == "slm"
    assert app.invoke({"text": "hi"})["label"] == "llm"
    assert swapped.nodes["triage"].subgraphs[0] is swapped.nodes["triage"].bound


def test_subgraph_named_without_inner_node_raises():
    classify, _ = closure_nodes(ScriptedChatModel(responses=["llm"]))
    outer = StateGraph(State)
    outer.add_node("triage", one_node_graph(classify).compile())
    outer.add_edge(START, "triage")

    with pytest.raises(NodeSwapError, match="triage/classify"):
        swap_node_models(outer.compile(), {"triage": slm_saying("slm")})


def test_create_react_agent_swaps_agent_node():
    from langgraph.prebuilt import create_react_agent

    llm = ScriptedChatModel(responses=["llm answer"])
    agent = create_react_agent(llm, [get_weather])

    def answer(messages, tools):
        if messages[-1].role == "tool":
            return "It is " + messages[-1].text
        call = ToolCall(name="get_weather", arguments={"city": "Oslo"}, id="call_7")
        return Generation(message=Message(role="assistant", content="", tool_calls=(call,)))

    generator = ScriptedGenerator(answer)
    swapped = swap_node_models(agent, {"agent": SLMChatModel(generator=generator)})
    result = swapped.invoke({"messages": [HumanMessage("weather in Oslo?")]})

    assert result["messages"][-1].content == "It is sunny in Oslo"
    assert [tool.name for tool in generator.calls[0]["tools"]] == ["get_weather"]
    assert agent.invoke({"messages": [HumanMessage("hi")]})["messages"][-1].content == "llm answer"


def test_create_agent_swaps_model_node():
    from langchain.agents import create_agent

    llm = ScriptedChatModel(responses=["llm answer"])
    agent = create_agent(llm, tools=[get_weather])

    def answer(messages, tools):
        if messages[-1].role == "tool":
            return "done: " + messages[-1].text
        call = ToolCall(name="get_weather", arguments={"city": "Rome"}, id="call_9")
        return Generation(message=Message(role="assistant", content="", tool_calls=(call,)))

    generator = ScriptedGenerator(answer)
    swapped = swap_node_models(agent, {"model": SLMChatModel(generator=generator)})
    result = swapped.invoke({"messages": [HumanMessage("weather in Rome?")]})

    assert result["messages"][-1].content == "done: sunny in Rome"
    assert agent.invoke({"messages": [HumanMessage("hi")]})["messages"][-1].content == "llm answer"


def test_model_built_in_node_body_raises_with_alternative():
    def classify(state: State) -> State:
        model = ScriptedChatModel(responses=["fresh"])
        return {"label": model.invoke(state["text"]).content}

    with pytest.raises(NodeSwapError, match=r"'classify'.*inside the node body.*with_model_overrides"):
        swap_node_models(one_node_graph(classify).compile(), {"classify": slm_saying("slm")})


def test_node_without_model_lists_supported_shapes():
    app = one_node_graph(lambda state: {"label": state["text"].upper()}).compile()

    with pytest.raises(NodeSwapError, match=r"no chat model was found.*Supported node shapes: .*model\.bind_tools"):
        swap_node_models(app, {"classify": slm_saying("slm")})


def test_model_overrides_redirect_node_built_model():
    def classify(state: State) -> State:
        model = node_model(ScriptedChatModel(responses=["fresh"]))
        return {"label": model.invoke(state["text"]).content}

    app = one_node_graph(classify).compile()
    overridden = with_model_overrides(app, {"classify": slm_saying("slm")})

    assert overridden.invoke({"text": "hi"})["label"] == "slm"
    assert app.invoke({"text": "hi"})["label"] == "fresh"


def test_model_overrides_reach_subgraph_node_by_path():
    def classify(state: State) -> State:
        model = node_model(ScriptedChatModel(responses=["fresh"]))
        return {"label": model.invoke(state["text"]).content}

    outer = StateGraph(State)
    outer.add_node("triage", one_node_graph(classify).compile())
    outer.add_edge(START, "triage")
    overridden = with_model_overrides(outer.compile(), {"triage/classify": slm_saying("slm")})

    assert overridden.invoke({"text": "hi"})["label"] == "slm"


def test_unknown_node_raises_with_node_list():
    app = one_node_graph(module_level_node).compile()

    with pytest.raises(NodeSwapError, match=r"'summarise' not found.*\['classify'\]"):
        swap_node_models(app, {"summarise": slm_saying("slm")})


def test_state_graph_in_state_graph_out():
    llm = ScriptedChatModel(responses=["llm"])
    classify, _ = closure_nodes(llm)
    graph = one_node_graph(classify)

    swapped = swap_node_models(graph, {"classify": slm_saying("slm")})

    assert isinstance(swapped, StateGraph)
    assert swapped.compile().invoke({"text": "hi"})["label"] == "slm"
    assert graph.compile().invoke({"text": "hi"})["label"] == "llm"
    swapped.add_node("extra", module_level_node)
    assert "extra" not in graph.nodes


# -- preserved properties ------------------------------------------------------------------


def routed_graph(llm, retry_policy: RetryPolicy | None = None) -> StateGraph:
    classify, _ = closure_nodes(llm)
    retry_policy = retry_policy or RetryPolicy(max_attempts=5)
    graph = StateGraph(State)
    graph.add_node("classify", classify, retry_policy=retry_policy)
    graph.add_node("refund", lambda state: {"route": "refund desk"})
    graph.add_node("other", lambda state: {"route": "front desk"})
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", lambda state: state["label"], {"refund": "refund", "billing": "other"})
    graph.add_edge("refund", END)
    graph.add_edge("other", END)
    return graph


def test_conditional_edges_route_on_new_answer():
    app = routed_graph(ScriptedChatModel(responses=["billing"])).compile()

    swapped = swap_node_models(app, {"classify": slm_saying("refund")})

    assert swapped.invoke({"text": "x"})["route"] == "refund desk"
    assert app.invoke({"text": "x"})["route"] == "front desk"


def test_compile_options_and_config_are_kept():
    checkpointer, store, cache = InMemorySaver(), InMemoryStore(), InMemoryCache()
    app = routed_graph(ScriptedChatModel(responses=["billing"])).compile(
        checkpointer=checkpointer, store=store, cache=cache, interrupt_after=["classify"], name="support"
    )
    app = app.with_config(recursion_limit=7, configurable={"tenant": "acme"})

    swapped = swap_node_models(app, {"classify": slm_saying("refund")})

    assert swapped.checkpointer is checkpointer
    assert swapped.store is store
    assert swapped.cache is cache
    assert swapped.interrupt_after_nodes == ["classify"]
    assert swapped.name == "support"
    assert swapped.config["recursion_limit"] == 7
    assert swapped.config["configurable"] == {"tenant": "acme"}
    assert swapped.builder.state_schema is State
    assert swapped.builder.nodes["classify"].retry_policy == RetryPolicy(max_attempts=5)
    assert swapped.nodes["classify"].retry_policy == (RetryPolicy(max_attempts=5),)
    assert swapped.builder.branches["classify"].keys() == app.builder.branches["classify"].keys()
    assert swapped.get_graph().to_json() == app.get_graph().to_json()


def test_retry_policy_retries_swapped_node():
    attempts = []

    def flaky(messages, tools):
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("model server restarting")
        return "refund"

    policy = RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=ConnectionError)
    graph = routed_graph(ScriptedChatModel(responses=["billing"]), retry_policy=policy)
    swapped = swap_node_models(graph.compile(), {"classify": SLMChatModel(generator=ScriptedGenerator(flaky))})

    assert swapped.invoke({"text": "x"})["route"] == "refund desk"
    assert len(attempts) == 3


def test_paused_thread_resumes_on_swapped_graph():
    checkpointer = InMemorySaver()
    llm = ScriptedChatModel(responses=["billing"])
    graph = StateGraph(State)
    classify, audit = closure_nodes(llm)
    graph.add_node("classify", classify)
    graph.add_node("audit", audit)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "audit")
    graph.add_edge("audit", END)
    app = graph.compile(checkpointer=checkpointer, interrupt_before=["audit"])
    config = {"configurable": {"thread_id": "t1"}}

    paused = app.invoke({"text": "x"}, config)
    swapped = swap_node_models(app, {"audit": slm_saying("slm audit")})
    resumed = swapped.invoke(None, config)

    assert paused == {"text": "x", "label": "billing"}
    assert app.get_state(config).next == ()
    assert resumed == {"text": "x", "label": "billing", "route": "slm audit"}


def test_interrupt_inside_swapped_node_with_fallback():
    store = MemoryTraceStore()
    llm = ScriptedChatModel(responses=["billing"])

    def classify(state: State) -> State:
        label = llm.invoke(state["text"]).content
        approved = interrupt({"proposed": label})
        return {"label": label if approved == "yes" else "rejected"}

    app = one_node_graph(classify).compile(checkpointer=InMemorySaver())
    slm = slm_saying("not-a-label")
    swapped = swap_node_models(
        app, {"classify": lambda original: FallbackChatModel(slm, original, validate={"labels": ["billing", "refund"]}, store=store)}
    )
    config = {"configurable": {"thread_id": "t2"}}

    first = swapped.invoke({"text": "invoice"}, config)
    final = swapped.invoke(Command(resume="yes"), config)

    assert first["__interrupt__"][0].value == {"proposed": "billing"}
    assert final["label"] == "billing"
    decisions = [record.metadata["slmshift.decision"] for record in store.records()]
    assert decisions == ["fallback", "fallback"]
    assert {record.node for record in store.records()} == {"classify"}
