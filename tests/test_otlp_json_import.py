"""`slmshift traces import` reads OTLP JSON trace files.

The spans come from the real OpenInference LangChain instrumentation on langchain-core's
fake chat model, because no hosted LLM is reachable here. The OTLP exporter's own protobuf
encoder writes them. A second file is written in the collector file exporter's hex-id form.
"""

from __future__ import annotations

import json

import pytest
from google.protobuf.json_format import MessageToDict
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from slmshift.cli import main
from slmshift.commands.traces import detect_import_format
from slmshift.integrations.otlp_json import read_otlp_json
from slmshift.records import RecordError
from slmshift.store import TraceStore


def _openinference_request_json() -> str:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        model = GenericFakeChatModel(messages=iter([AIMessage(content="refund")]))
        model.invoke([HumanMessage("I want my money back")], config={"metadata": {"langgraph_node": "intent"}})
    finally:
        instrumentor.uninstrument()
    request = encode_spans(exporter.get_finished_spans())
    return json.dumps(MessageToDict(request))


COLLECTOR_LINE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "support-bot"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "opentelemetry.instrumentation.langchain"},
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "chat gpt-4o-mini",
                            "kind": 3,
                            "startTimeUnixNano": "1733300000000000000",
                            "endTimeUnixNano": "1733300000250000000",
                            "attributes": [
                                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "21"}},
                                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 2}},
                                {
                                    "key": "gen_ai.response.finish_reasons",
                                    "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
                                },
                                {"key": "langgraph.node", "value": {"stringValue": "classify"}},
                                {
                                    "key": "gen_ai.input.messages",
                                    "value": {
                                        "stringValue": '[{"role":"user","parts":[{"type":"text","content":"card lost"}]}]'
                                    },
                                },
                                {
                                    "key": "gen_ai.output.messages",
                                    "value": {
                                        "stringValue": '[{"role":"assistant","parts":[{"type":"text","content":"lost_card"}],"finish_reason":"stop"}]'
                                    },
                                },
                            ],
                            "status": {},
                        },
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b175",
                            "name": "chat gpt-4o-mini",
                            "startTimeUnixNano": "1733300001000000000",
                            "endTimeUnixNano": "1733300001100000000",
                            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
                            "status": {"code": 2, "message": "RateLimitError: slow down"},
                        },
                    ],
                }
            ],
        }
    ]
}


def test_openinference_otlp_json_file_imports(tmp_path, capsys):
    source = tmp_path / "traces.json"
    source.write_text(_openinference_request_json() + "\n", encoding="utf-8")
    store_path = tmp_path / "traces.db"

    assert detect_import_format(source.read_text()) == "otlp-json"
    assert main(["traces", "import", str(source), "--store", str(store_path)]) == 0
    assert "Imported 1 new calls" in capsys.readouterr().out
    with TraceStore(str(store_path)) as store:
        [record] = list(store.records())
    assert record.messages[0].content == "I want my money back"
    assert record.response.content == "refund"
    assert record.node == "intent"


def test_collector_file_lines_import():
    text = json.dumps(COLLECTOR_LINE) + "\n\n" + json.dumps(COLLECTOR_LINE) + "\n"
    records = read_otlp_json(text, "collector.json")
    assert len(records) == 2
    ok, failed = records
    assert ok.trace_id == "5b8efff798038103d269b633813fc60c"
    assert ok.parent_id == "eee19b7ec3c1b173"
    assert ok.agent == "support-bot"
    assert ok.node == "classify"
    assert ok.model == "gpt-4o-mini"
    assert ok.provider == "openai"
    assert ok.usage.input_tokens == 21
    assert ok.usage.output_tokens == 2
    assert ok.finish_reason == "stop"
    assert ok.latency_ms == pytest.approx(250.0)
    assert ok.messages[0].content == "card lost"
    assert ok.response.content == "lost_card"
    assert ok.output_kind == "label"
    assert failed.error == "RateLimitError: slow down"
    assert failed.response is None


def test_bad_otlp_line_names_the_line(tmp_path, capsys):
    source = tmp_path / "broken.json"
    source.write_text(json.dumps(COLLECTOR_LINE) + "\n{not json\n", encoding="utf-8")
    store_path = tmp_path / "traces.db"
    assert main(["traces", "import", str(source), "--store", str(store_path), "--format", "otlp-json"]) == 2
    assert "line 2: invalid JSON" in capsys.readouterr().err
    with TraceStore(str(store_path)) as store:
        assert store.count() == 0


def test_invalid_span_id_is_rejected():
    line = json.loads(json.dumps(COLLECTOR_LINE))
    line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "xyz"
    with pytest.raises(RecordError, match="line 1: not an OTLP trace request"):
        read_otlp_json(json.dumps(line), "bad.json")
