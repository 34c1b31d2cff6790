"""SLMChatModel over tiny local transformers models (full and LoRA) and over an
OpenAI-compatible endpoint.

The endpoint is a stdlib `http.server` on 127.0.0.1 that stands in for vLLM: it serves
`/v1/chat/completions`, picks the adapter by the request's `model` field and answers with the
same tiny local model. The LLM on the other side of a swap is `ScriptedChatModel`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from conftest_swap_models import REVIEW, REVIEW_LABEL, WEATHER_QUESTION, WEATHER_TOOL
from fakes_swap import ScriptedChatModel
from slmshift.converters.langgraph import swap_node_models
from slmshift.integrations.langchain import SLMChatModel
from slmshift.integrations.openai_compat import EndpointError, endpoint_chat_model
from slmshift.records import Message, ToolDefinition
from slmshift.slm import ManifestError, load_slm


@pytest.fixture(scope="module")
def hf_model(tiny_hf_dir) -> SLMChatModel:
    return SLMChatModel(generator=load_slm(tiny_hf_dir, max_new_tokens=40))


def test_hf_slm_answers_label_with_usage_and_confidence(hf_model):
    answer = hf_model.invoke([HumanMessage(REVIEW)])

    assert answer.content == REVIEW_LABEL
    assert answer.response_metadata["finish_reason"] == "stop"
    assert 0.5 < answer.response_metadata["confidence"] <= 1.0
    assert answer.usage_metadata["input_tokens"] > 5
    assert answer.usage_metadata["output_tokens"] >= 2


def test_hf_slm_tool_call_parsed_into_tool_calls(hf_model):
    answer = hf_model.bind_tools([WEATHER_TOOL]).invoke([HumanMessage(WEATHER_QUESTION)])

    assert answer.tool_calls[0]["name"] == "get_weather"
    assert answer.tool_calls[0]["args"] == {"city": "Paris"}
    assert answer.response_metadata["finish_reason"] == "tool_calls"


def test_hf_slm_streams_text_then_usage(hf_model):
    chunks = list(hf_model.stream([HumanMessage(REVIEW)]))

    assert len(chunks) > 2
    assert "".join(chunk.content for chunk in chunks) == REVIEW_LABEL
    assert chunks[-1].usage_metadata["output_tokens"] >= 2
    assert chunks[-1].response_metadata["finish_reason"] == "stop"


def test_hf_slm_max_new_tokens_reports_length(tiny_hf_dir):
    generator = load_slm(tiny_hf_dir)
    generation = generator.generate([Message(role="user", content=REVIEW)], max_new_tokens=1)

    assert generation.finish_reason == "length"
    assert generation.output_tokens == 1


def test_lora_slm_loads_adapter_on_base(tiny_lora_dir):
    model = SLMChatModel(generator=load_slm(tiny_lora_dir, max_new_tokens=8))

    assert model.invoke([HumanMessage(REVIEW)]).content == REVIEW_LABEL
    assert model.supports_tools is False


def test_lora_dir_without_adapter_raises(tmp_path):
    from slmshift.slm.base import SLMManifest

    SLMManifest(kind="lora", base_model="nowhere").save(tmp_path)

    with pytest.raises(ManifestError, match="adapter_config.json"):
        load_slm(tmp_path)


class WeatherState(TypedDict, total=False):
    question: str
    city: str


def test_tool_call_survives_swap_to_tiny_model(hf_model):
    llm = ScriptedChatModel(responses=["I cannot call tools"])
    bound = llm.bind_tools([WEATHER_TOOL])

    def plan_call(state: WeatherState) -> WeatherState:
        message = bound.invoke([HumanMessage(state["question"])])
        return {"city": message.tool_calls[0]["args"]["city"] if message.tool_calls else "none"}

    graph = StateGraph(WeatherState)
    graph.add_node("plan_call", plan_call)
    graph.add_edge(START, "plan_call")
    graph.add_edge("plan_call", END)
    app = graph.compile()

    swapped = swap_node_models(app, {"plan_call": hf_model})

    assert swapped.invoke({"question": WEATHER_QUESTION})["city"] == "Paris"
    assert app.invoke({"question": WEATHER_QUESTION})["city"] == "none"


# -- OpenAI-compatible endpoint --------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(tiny_hf_dir):
    generators = {"weather-adapter": load_slm(tiny_hf_dir, max_new_tokens=40)}
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            generator = generators.get(body["model"])
            if self.path != "/v1/chat/completions" or generator is None:
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b'{"error": "unknown model"}')
                return
            messages = [Message(role=m["role"], content=m["content"]) for m in body["messages"]]
            tools = [ToolDefinition.from_dict(tool) for tool in body.get("tools") or ()] or None
            generation = generator.generate(messages, tools=tools, max_new_tokens=body.get("max_tokens"))
            self._answer(body, generation)

        def _answer(self, body, generation):
            message = generation.message.to_openai()
            usage = {"prompt_tokens": generation.input_tokens, "completion_tokens": generation.output_tokens}
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in (message["content"][:3], message["content"][3:]):
                    event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                final = {"choices": [{"index": 0, "delta": {}, "finish_reason": generation.finish_reason}], "usage": usage}
                self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
                return
            logprob = {"content": [{"token": "x", "logprob": -0.1}, {"token": "y", "logprob": -0.2}]}
            payload = {
                "choices": [{"index": 0, "message": message, "finish_reason": generation.finish_reason, "logprobs": logprob}],
                "usage": usage,
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", requests
    server.shutdown()
    server.server_close()


def test_endpoint_model_answers_with_adapter_name(endpoint):
    url, requests = endpoint
    model = endpoint_chat_model(url, "weather-adapter")

    answer = model.invoke([HumanMessage(REVIEW)])

    assert answer.content == REVIEW_LABEL
    assert requests[-1]["model"] == "weather-adapter"
    assert answer.response_metadata["confidence"] == pytest.approx(0.7408, abs=1e-3)
    assert answer.usage_metadata["output_tokens"] >= 2


def test_endpoint_tool_calls_come_back_as_tool_calls(endpoint):
    url, requests = endpoint
    model = endpoint_chat_model(url, "weather-adapter").bind_tools([WEATHER_TOOL])

    answer = model.invoke([HumanMessage(WEATHER_QUESTION)])

    assert requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    assert answer.tool_calls[0]["args"] == {"city": "Paris"}


def test_endpoint_streams_deltas(endpoint):
    url, _ = endpoint
    chunks = list(endpoint_chat_model(url, "weather-adapter").stream([HumanMessage(REVIEW)]))

    assert [chunk.content for chunk in chunks[:2]] == [REVIEW_LABEL[:3], REVIEW_LABEL[3:]]
    assert chunks[-1].usage_metadata["output_tokens"] >= 2


def test_endpoint_unknown_adapter_raises(endpoint):
    url, _ = endpoint

    with pytest.raises(EndpointError, match="HTTP 404"):
        endpoint_chat_model(url, "missing-adapter").invoke([HumanMessage(REVIEW)])


class ReviewState(TypedDict, total=False):
    text: str
    label: str


def test_swapped_graph_streams_slm_tokens(hf_model):
    llm = ScriptedChatModel(responses=["negative"])

    def classify(state: ReviewState) -> ReviewState:
        return {"label": llm.invoke([HumanMessage(state["text"])]).content}

    graph = StateGraph(ReviewState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", END)
    swapped = swap_node_models(graph.compile(), {"classify": hf_model})

    chunks = [chunk for chunk, metadata in swapped.stream({"text": REVIEW}, stream_mode="messages")]

    assert len(chunks) > 2
    assert "".join(chunk.content for chunk in chunks) == REVIEW_LABEL
    assert chunks[-1].usage_metadata["output_tokens"] >= 2
