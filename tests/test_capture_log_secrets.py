"""Capture failure logs name exception types and code locations, never record content.

The chat models are scripted fakes (tests.fakes.ScriptedChatModel, llama-index-core's
MockLLM) because no hosted LLM is reachable here. The planted secrets stand for an API key
quoted in a provider error and a password in a URL inside a message.
"""

from __future__ import annotations

import logging

import pytest
from llama_index.core.llms.mock import MockLLM
from opentelemetry.sdk.trace import TracerProvider

from slmshift.callbacks._stats import traceback_without_messages
from slmshift.callbacks.langchain import LangChainTraceHandler
from slmshift.callbacks.llama_index import LlamaIndexTraceHandler
from slmshift.integrations._span_emitter import SpanEmitter
from slmshift.records import CallRecord, Message
from slmshift.store.base import MemoryTraceStore
from tests.fakes import ScriptedChatModel

API_KEY = "sk-live-Planted4242"
URL_PASSWORD = "PwLeak777"
SECRETS = (API_KEY, URL_PASSWORD)


def leaky_redactor(record: CallRecord) -> CallRecord:
    """Fail the way a real redactor might: quoting the record in the error, with a cause."""
    try:
        raise KeyError(f"https://bob:{URL_PASSWORD}@db.example.invalid")
    except KeyError as cause:
        raise ValueError(f"cannot redact {record.error or record.messages}") from cause


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_formatter_keeps_types_and_frames_only() -> None:
    try:
        leaky_redactor(CallRecord(messages=(), error=f"Incorrect API key provided: {API_KEY}"))
    except ValueError as exc:
        text = traceback_without_messages(exc)

    assert_no_secret(text)
    assert "builtins.KeyError" in text
    assert "builtins.ValueError" in text
    assert "in leaky_redactor" in text
    assert text.index("KeyError") < text.index("ValueError")


def test_langchain_redactor_failure_log_has_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryTraceStore()
    model = ScriptedChatModel(responses=[RuntimeError(f"Incorrect API key provided: {API_KEY}")])
    handler = LangChainTraceHandler(store, agent="bot", redactor=leaky_redactor)

    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="Incorrect API key"):
        model.invoke(f"fetch https://bob:{URL_PASSWORD}@db.example.invalid", config={"callbacks": [handler]})

    assert handler.stats.redaction_failures == 1
    assert store.count() == 0
    assert "redactor" in caplog.text
    assert "ValueError" in caplog.text
    assert "in leaky_redactor" in caplog.text
    assert_no_secret(caplog.text)


def test_llama_index_redactor_failure_log_has_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryTraceStore()

    with caplog.at_level(logging.ERROR), LlamaIndexTraceHandler(store, agent="bot", redactor=leaky_redactor) as handler:
        MockLLM().complete(f"fetch https://bob:{URL_PASSWORD}@db.example.invalid {API_KEY}")

    assert handler.stats["errors"] == 1
    assert store.count() == 0
    assert "ValueError" in caplog.text
    assert_no_secret(caplog.text)


def test_span_emitter_redactor_failure_log_has_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    emitter = SpanEmitter(TracerProvider(), capture_content=True, redactor=leaky_redactor)
    record = CallRecord(messages=(Message(role="user", content=f"key {API_KEY}"),), error=API_KEY)

    with caplog.at_level(logging.ERROR):
        emitter.emit_model_call(record, parent_run_id=None)

    assert emitter.stats["errors"] == 1
    assert "ValueError" in caplog.text
    assert_no_secret(caplog.text)
