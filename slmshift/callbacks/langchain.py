"""Capture every model call of a LangChain runnable or LangGraph graph as a `CallRecord`.

Usage::

    handler = LangChainTraceHandler(TraceStore(), agent="support-bot")
    graph.invoke(inputs, config={"callbacks": [handler]})
    handler.flush()

The handler is a plain `BaseCallbackHandler` rather than a `BaseTracer`. A tracer builds a
pydantic `Run` object, with inputs and outputs, for every chain, tool and model run. slmshift
needs only a few ids per chain and one snapshot per model call. Because
`on_llm_end` carries no metadata, the start of each model call is kept by `run_id` and freed
when the call ends, fails or is cancelled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from slmshift.callbacks._langchain_convert import (
    PayloadLimiter,
    convert_message,
    convert_messages,
    convert_prompt,
    convert_response_format,
    convert_tools,
    finish_reason_from,
    response_model_name,
    usage_from,
)
from slmshift.callbacks._serialize import DEFAULT_MAX_CHARS
from slmshift.callbacks._stats import CaptureStats, StatsCounter, describe_error
from slmshift.callbacks.events import RunEnd, RunKind, RunListener, RunStart
from slmshift.records import CallRecord, Message, ToolDefinition, Usage
from slmshift.store.base import TraceStore

logger = logging.getLogger(__name__)

Redactor = Callable[[CallRecord], CallRecord]

# Metadata keys that become record fields, or that only describe the library versions.
_METADATA_SKIPPED = frozenset(
    {
        "ls_provider",
        "ls_model_name",
        "langgraph_node",
        "langgraph_step",
        "lc_versions",
        "ls_integration",
    }
)
# Invocation parameters that become record fields instead of metadata.
_PARAMS_SKIPPED = frozenset(
    {"tools", "tool_choice", "response_format", "ls_structured_output_format"}
)
_MAX_ERROR_CHARS = 2_000
# Tags LangChain and LangGraph add to every run to number sequence and graph steps.
_INTERNAL_TAG_PREFIXES = ("seq:step:", "graph:step:")
# Tag of the model calls a `FallbackChatModel` makes inside its own run. The wrapper's run is
# the node's model call, so recording the inner calls too would count one call two or three times.
INNER_RUN_TAG = "slmshift:inner"


def _control_flow_exceptions() -> tuple[type[BaseException], ...]:
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return ()
    return (GraphBubbleUp,)


class UnfinishedRunError(RuntimeError):
    """The agent run ended before this inner run reported its end."""

    def __init__(self) -> None:
        super().__init__("the agent run ended before this run reported its end")


# LangGraph raises GraphBubbleUp subclasses (GraphInterrupt, ParentCommand) to steer the
# graph: they end runs without being failures.
_CONTROL_FLOW = _control_flow_exceptions()


@dataclass(slots=True)
class _Run:
    """A chain, tool or retriever run: just enough to attribute model calls inside it."""

    root: UUID
    node_run: UUID | None
    checkpoint_ns: str | None
    kind: RunKind


@dataclass(slots=True)
class _ModelRun:
    """The start of a model call, kept until it ends."""

    started: float
    started_at: datetime
    trace_id: UUID
    parent_id: UUID | None
    node: str | None
    step: int | None
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...]
    tool_choice: Any
    response_format: dict[str, Any] | None
    model: str | None
    provider: str | None
    metadata: dict[str, Any]
    truncated: bool
    chunks: list[Any] = field(default_factory=list)


class LangChainTraceHandler(BaseCallbackHandler):
    """Records each chat-model and completion-model call as a `CallRecord` in a `TraceStore`.

    Attach it to any runnable or graph with `config={"callbacks": [handler]}`; one handler
    may serve many concurrent runs, from threads or from `asyncio.gather`.

    Each record contains `trace_id` (the agent run: the root run the handler saw), `parent_id`
    (the graph node's run, else the model call's direct parent), `node` (the node name, as
    `outer/inner` inside subgraphs) and `step` (the LangGraph step).

    The handler never raises into the agent: internal failures are logged and counted in
    `stats`. The SQLite and PostgreSQL stores write off the agent's thread; `flush` waits.

    Calls the callbacks cannot see are not recorded: a model called with `callbacks=[]`, or
    from a plain `ThreadPoolExecutor` inside a node, which drops the callback context
    (langchain-core's `ContextThreadPoolExecutor` keeps it).

    Run listeners (the hook for OpenTelemetry spans): objects implementing
    `slmshift.callbacks.events.RunListener` get a `RunStart` and a `RunEnd` event for the agent
    run, every node, chain, tool and model run, on the agent's thread. A model run's `RunEnd`
    carries the stored record. Add them with `listeners=` or `add_listener`. With
    `tracer_provider` given, the handler adds `slmshift.integrations.opentelemetry.SpanListener`.

    Args:
        store: Where records go; `store.add` must return quickly (every `TraceStore` does).
        agent: Name stored in `CallRecord.agent`.
        tracer_provider: An OpenTelemetry `TracerProvider`; spans are emitted through it.
        redactor: Called with each record before it is stored, on the agent's thread; it
            returns the record to store. When it raises, the record is dropped and counted,
            so unredacted data never reaches the store. NOTE: its time adds to every model
            call, so a slow redactor (an NLP pipeline) slows the agent by that much.
        max_payload_chars: Longest text kept per payload (message content, tool-call
            arguments, schema or metadata value); longer text is cut and marked, and the
            record's metadata gets `"truncated": true`.
        capture_metadata: Whether to keep the framework's run metadata and invocation
            parameters in `CallRecord.metadata`.
        listeners: Run listeners to add.

    Raises:
        TypeError: `store` has no `add` method, or `redactor` is not callable.
        ValueError: `max_payload_chars` is not a positive integer.
    """

    run_inline = True  # called in the event loop's thread, not sent to an executor
    raise_error = False

    def __init__(
        self,
        store: TraceStore,
        agent: str | None = None,
        *,
        tracer_provider: Any | None = None,
        redactor: Redactor | None = None,
        max_payload_chars: int = DEFAULT_MAX_CHARS,
        capture_metadata: bool = True,
        listeners: Iterable[RunListener] = (),
    ) -> None:
        _validate_options(store, redactor, max_payload_chars)
        self.store = store
        self.agent = agent
        self.max_payload_chars = max_payload_chars
        self.capture_metadata = capture_metadata
        self._redactor = redactor
        self._counter = StatsCounter()
        # Per-run state, keyed by run id. Plain dict get/set/pop are atomic under the GIL,
        # and concurrent runs never share a run id, so no lock is needed.
        self._runs: dict[UUID, _Run] = {}
        self._model_runs: dict[UUID, _ModelRun] = {}
        self._inner_runs: set[UUID] = set()
        self._members: dict[UUID, list[UUID]] = {}
        self._listeners: list[RunListener] = list(listeners)
        if tracer_provider is not None:
            self.add_listener(_span_listener(tracer_provider, agent))

    # -- public ------------------------------------------------------------------------------

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the handler's counters."""
        return self._counter.snapshot()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the store has written every record; return False on timeout."""
        return self.store.flush(timeout)

    def add_listener(self, listener: RunListener) -> None:
        """Send run events to `listener` from now on."""
        if not isinstance(listener, RunListener):
            raise TypeError(
                f"Listener {listener!r} lacks on_run_start/on_run_end: implement "
                "slmshift.callbacks.events.RunListener."
            )
        self._listeners = [*self._listeners, listener]

    @property
    def active_runs(self) -> int:
        """How many runs the handler is holding state for; 0 once every run has ended."""
        return len(self._runs) + len(self._model_runs) + len(self._members) + len(self._inner_runs)

    # -- chain, tool and retriever runs ------------------------------------------------------

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_run(run_id, parent_run_id, metadata, "chain", kwargs.get("name"))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, error)

    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        self._start_run(run_id, parent_run_id, metadata, "tool", name)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, error)

    def on_retriever_start(
        self,
        serialized: Any,
        query: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_run(run_id, parent_run_id, metadata, "chain", kwargs.get("name"))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, None)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, error)

    def _start_run(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kind: RunKind,
        name: str | None,
    ) -> None:
        try:
            run = self._new_run(run_id, parent_run_id, metadata, kind)
            self._runs[run_id] = run
            if self._listeners:
                self._emit_start(run_id, parent_run_id, run.root, run.kind, name, metadata)
        except Exception as exc:  # noqa: BLE001 - capture never raises into the agent
            self._counter.failure("internal_errors", f"{kind} start", exc, log=logger)

    def _new_run(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kind: RunKind,
    ) -> _Run:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        checkpoint_ns = metadata.get("langgraph_checkpoint_ns") if metadata else None

        if parent is not None:
            root = parent.root
        else:
            root = parent_run_id if parent_run_id is not None else run_id

        # A run whose checkpoint namespace differs from its parent's starts a graph task:
        # it is the node's run. Runs inside the node share the namespace.
        if checkpoint_ns is not None and (parent is None or parent.checkpoint_ns != checkpoint_ns):
            node_run: UUID | None = run_id
            kind = "node" if kind == "chain" else kind
        else:
            node_run = parent.node_run if parent is not None else None

        if root == run_id:
            self._members[run_id] = []
            kind = "agent" if kind == "chain" else kind
        else:
            self._track(root, run_id)
        return _Run(root, node_run, checkpoint_ns, kind)

    def _track(self, root: UUID, run_id: UUID) -> None:
        members = self._members.get(root)
        if members is not None:
            members.append(run_id)

    def _end_run(self, run_id: UUID, error: BaseException | None) -> None:
        try:
            run = self._runs.pop(run_id, None)
            if run is None:
                self._counter.increment("unmatched_events")
                return
            error = _real_error(error)
            if run.root == run_id:
                self._end_unfinished(run_id, error)
            if self._listeners:
                self._emit_end(run_id, run.kind, error, None)
        except Exception as exc:  # noqa: BLE001 - capture never raises into the agent
            self._counter.failure("internal_errors", "run end", exc, log=logger)

    def _end_unfinished(self, root: UUID, error: BaseException | None) -> None:
        # The framework does not always report the end of inner runs: a cancelled asyncio
        # task skips on_llm_error, and an abandoned stream skips chain ends. End them here,
        # with the agent run's error, so that no call is lost and no state is kept.
        for member in self._members.pop(root, ()):
            run = self._runs.pop(member, None)
            if run is not None and self._listeners:
                self._emit_end(member, run.kind, error or UnfinishedRunError(), None)
            model_run = self._model_runs.pop(member, None)
            if model_run is not None:
                self._finish_model_run(member, model_run, None, error or UnfinishedRunError())

    # -- model runs --------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if tags and INNER_RUN_TAG in tags:
            self._inner_runs.add(run_id)
            return
        try:
            limiter = PayloadLimiter(self.max_payload_chars)
            sent = messages[0] if len(messages) == 1 else [m for batch in messages for m in batch]
            converted, unmapped_roles = convert_messages(sent, limiter)
            self._start_model_run(run_id, parent_run_id, converted, limiter, tags, metadata, kwargs)
            if unmapped_roles:
                self._model_runs[run_id].metadata["original_roles"] = unmapped_roles
        except Exception as exc:  # noqa: BLE001 - capture never raises into the agent
            self._counter.failure("internal_errors", "chat model start", exc, log=logger)

    def on_llm_start(
        self,
        serialized: Any,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if tags and INNER_RUN_TAG in tags:
            self._inner_runs.add(run_id)
            return
        try:
            limiter = PayloadLimiter(self.max_payload_chars)
            converted = tuple(convert_prompt(prompt, limiter) for prompt in prompts)
            self._start_model_run(run_id, parent_run_id, converted, limiter, tags, metadata, kwargs)
        except Exception as exc:  # noqa: BLE001 - capture never raises into the agent
            self._counter.failure("internal_errors", "llm start", exc, log=logger)

    def on_llm_new_token(
        self, token: str, *, chunk: Any = None, run_id: UUID, **kwargs: Any
    ) -> None:
        # Chunks are kept only to rebuild a partial response when the stream fails; on success
        # LangChain passes the merged message to on_llm_end.
        model_run = self._model_runs.get(run_id)
        if model_run is not None and chunk is not None:
            model_run.chunks.append(chunk)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_model_run(run_id, response, None)

    def on_llm_error(
        self, error: BaseException, *, run_id: UUID, response: Any = None, **kwargs: Any
    ) -> None:
        self._end_model_run(run_id, response, error)

    def _start_model_run(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        messages: tuple[Message, ...],
        limiter: PayloadLimiter,
        tags: list[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        started = time.perf_counter()
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        # NOTE: when the handler is attached to the model alone, the agent run is unknown and
        # the direct parent run is used instead, so calls of one run get several trace ids.
        trace_id = parent.root if parent is not None else (parent_run_id or run_id)
        parent_id = (parent.node_run or parent_run_id) if parent is not None else parent_run_id

        tools, unrecognised_tools = convert_tools(params.get("tools"), limiter)
        tool_choice = params.get("tool_choice")
        model_run = _ModelRun(
            started=started,
            started_at=datetime.now(timezone.utc),
            trace_id=trace_id,
            parent_id=parent_id,
            node=_node_path(metadata),
            step=metadata.get("langgraph_step"),
            messages=messages,
            tools=tools,
            tool_choice=limiter.json(tool_choice) if tool_choice is not None else None,
            response_format=convert_response_format(kwargs.get("options"), params, limiter),
            model=metadata.get("ls_model_name") or params.get("model") or params.get("model_name"),
            provider=metadata.get("ls_provider"),
            metadata=self._record_metadata(metadata, params, tags, kwargs.get("name"), limiter),
            truncated=False,
        )
        if unrecognised_tools:
            model_run.metadata["unrecognised_tools"] = unrecognised_tools
        model_run.truncated = limiter.truncated
        self._model_runs[run_id] = model_run
        if trace_id != run_id:
            self._track(trace_id, run_id)
        if self._listeners:
            self._emit_start(
                run_id, parent_run_id, trace_id, "llm", kwargs.get("name"), metadata, model_run
            )

    def _record_metadata(
        self,
        metadata: Mapping[str, Any],
        params: Mapping[str, Any],
        tags: Sequence[str] | None,
        name: str | None,
        limiter: PayloadLimiter,
    ) -> dict[str, Any]:
        if not self.capture_metadata:
            return {}
        kept = {key: value for key, value in metadata.items() if key not in _METADATA_SKIPPED}
        settings = {key: value for key, value in params.items() if key not in _PARAMS_SKIPPED}
        converted = limiter.flat_mapping(kept)
        if settings:
            converted["invocation_params"] = limiter.flat_mapping(settings)
        if tags:
            converted["tags"] = [
                limiter.text(tag) for tag in tags if not tag.startswith(_INTERNAL_TAG_PREFIXES)
            ]
        if name:
            converted["run_name"] = limiter.text(name)
        return converted

    def _end_model_run(self, run_id: UUID, response: Any, error: BaseException | None) -> None:
        model_run = self._model_runs.pop(run_id, None)
        if model_run is None:
            if run_id in self._inner_runs:
                self._inner_runs.discard(run_id)
                return
            self._counter.increment("unmatched_events")
            return
        self._finish_model_run(run_id, model_run, response, error)

    def _finish_model_run(
        self, run_id: UUID, model_run: _ModelRun, response: Any, error: BaseException | None
    ) -> None:
        record = None
        try:
            record = self._build_record(run_id, model_run, response, error)
            record = self._store_record(record)
        except Exception as exc:  # noqa: BLE001 - capture never raises into the agent
            self._counter.failure("internal_errors", "model end", exc, log=logger)
            self._counter.increment("dropped")
            record = None
        if self._listeners:
            self._emit_end(run_id, "llm", error, record)

    def _build_record(
        self, run_id: UUID, model_run: _ModelRun, response: Any, error: BaseException | None
    ) -> CallRecord:
        latency_ms = (time.perf_counter() - model_run.started) * 1000.0
        limiter = PayloadLimiter(self.max_payload_chars)
        generation = _first_generation(response)
        if generation is None and model_run.chunks:
            generation = _merge_chunks(model_run.chunks)
        answer = _response_message(generation, limiter)
        llm_output = getattr(response, "llm_output", None)

        metadata = model_run.metadata
        if model_run.truncated or limiter.truncated:
            metadata["truncated"] = True
        if error is not None:
            self._counter.increment("failed_calls")
            if answer is not None:
                metadata["partial_response"] = True

        return CallRecord(
            # The model run's id is unique, links the record to the framework's run and
            # spares generating another UUID.
            id=str(run_id),
            messages=model_run.messages,
            response=answer,
            trace_id=str(model_run.trace_id),
            parent_id=str(model_run.parent_id) if model_run.parent_id is not None else None,
            agent=self.agent,
            node=model_run.node,
            model=response_model_name(generation) or model_run.model,
            provider=model_run.provider,
            tools=model_run.tools,
            usage=usage_from(getattr(generation, "message", None), llm_output)
            if generation is not None
            else Usage(),
            latency_ms=latency_ms,
            started_at=model_run.started_at,
            error=describe_error(error, max_chars=_MAX_ERROR_CHARS) if error is not None else None,
            finish_reason=finish_reason_from(generation),
            tool_choice=model_run.tool_choice,
            response_format=model_run.response_format,
            step=model_run.step if isinstance(model_run.step, int) else None,
            metadata=metadata,
        )

    def _store_record(self, record: CallRecord) -> CallRecord | None:
        if self._redactor is not None:
            record = self._redact(record)
            if record is None:
                return None
        try:
            accepted = self.store.add(record)
        except Exception as exc:  # noqa: BLE001 - a failing store must not break the agent
            self._counter.failure("dropped", "store.add", exc, log=logger)
            return None
        if accepted is False:
            self._counter.increment("dropped")
            return None
        self._counter.increment("records")
        return record

    def _redact(self, record: CallRecord) -> CallRecord | None:
        try:
            redacted = self._redactor(record)  # type: ignore[misc]
            if not isinstance(redacted, CallRecord):
                raise TypeError(
                    f"the redactor returned {type(redacted).__name__}, not a CallRecord"
                )
        except Exception as exc:  # noqa: BLE001 - drop the record rather than store it unredacted
            self._counter.failure("redaction_failures", "redactor", exc, log=logger)
            self._counter.increment("dropped")
            return None
        return redacted

    # -- listeners ---------------------------------------------------------------------------

    def _emit_start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        trace_id: UUID,
        kind: RunKind,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        model_run: _ModelRun | None = None,
    ) -> None:
        metadata = metadata or {}
        event = RunStart(
            run_id=run_id,
            parent_run_id=parent_run_id,
            trace_id=trace_id,
            kind=kind,
            name=name,
            node=model_run.node if model_run is not None else _node_path(metadata),
            step=metadata.get("langgraph_step"),
            start_time_ns=time.time_ns(),
            metadata=metadata,
        )
        for listener in self._listeners:
            try:
                listener.on_run_start(event)
            except Exception as exc:  # noqa: BLE001 - a listener must not break the agent
                self._counter.failure("listener_errors", "listener start", exc, log=logger)

    def _emit_end(
        self, run_id: UUID, kind: RunKind, error: BaseException | None, record: CallRecord | None
    ) -> None:
        event = RunEnd(
            run_id=run_id, kind=kind, end_time_ns=time.time_ns(), error=error, record=record
        )
        for listener in self._listeners:
            try:
                listener.on_run_end(event)
            except Exception as exc:  # noqa: BLE001 - a listener must not break the agent
                self._counter.failure("listener_errors", "listener end", exc, log=logger)


def _validate_options(store: Any, redactor: Any, max_payload_chars: Any) -> None:
    if not callable(getattr(store, "add", None)):
        raise TypeError(
            f"store={store!r} has no add method: pass a TraceStore, for example "
            'TraceStore() or TraceStore("memory://").'
        )
    if redactor is not None and not callable(redactor):
        raise TypeError(
            f"redactor={redactor!r} is not callable: pass a function CallRecord -> CallRecord."
        )
    if (
        isinstance(max_payload_chars, bool)
        or not isinstance(max_payload_chars, int)
        or max_payload_chars < 1
    ):
        raise ValueError(
            f"max_payload_chars={max_payload_chars!r} is invalid: pass a positive number of "
            f"characters (default {DEFAULT_MAX_CHARS})."
        )


def _span_listener(tracer_provider: Any, agent: str | None) -> RunListener:
    try:
        from slmshift.integrations.opentelemetry import SpanListener
    except ImportError as exc:
        raise ImportError(
            "tracer_provider= needs slmshift.integrations.opentelemetry.SpanListener and the "
            "OpenTelemetry SDK: install slmshift[otel]."
        ) from exc
    return SpanListener(tracer_provider, agent=agent)


def _node_path(metadata: Mapping[str, Any]) -> str | None:
    """Return the node path `outer/inner` from `langgraph_checkpoint_ns` (`a:<id>|b:<id>`)."""
    checkpoint_ns = metadata.get("langgraph_checkpoint_ns")
    if checkpoint_ns:
        return "/".join(segment.partition(":")[0] for segment in checkpoint_ns.split("|"))
    node = metadata.get("langgraph_node")
    return node if isinstance(node, str) else None


def _real_error(error: BaseException | None) -> BaseException | None:
    if error is not None and _CONTROL_FLOW and isinstance(error, _CONTROL_FLOW):
        return None
    return error


def _first_generation(response: Any) -> Any:
    generations = getattr(response, "generations", None)
    for batch in generations or ():
        if batch:
            return batch[0]
    return None


def _merge_chunks(chunks: list[Any]) -> Any:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


def _response_message(generation: Any, limiter: PayloadLimiter) -> Message | None:
    if generation is None:
        return None
    message = getattr(generation, "message", None)
    if message is None:
        return Message(
            role="assistant", content=limiter.text(getattr(generation, "text", "") or "")
        )
    converted, _ = convert_message(message, limiter)
    if converted.role != "assistant":
        converted = Message(
            role="assistant", content=converted.content, tool_calls=converted.tool_calls
        )
    return converted
