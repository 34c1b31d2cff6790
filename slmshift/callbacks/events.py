"""Run events that capture handlers pass to listeners, such as the OpenTelemetry span emitter.

A capture handler sees every run of the agent: the agent run itself (the root chain), each
graph node, each model call and each tool call. Listeners registered on the handler receive
these as `RunStart` and `RunEnd` events, in the order the framework reports them.

Contract for listeners:
- Methods are called on the agent's thread (or event loop), inside the callback, so they
  must return quickly and must not block.
- A listener that raises is logged and counted in the handler's `stats.listener_errors`; the
  exception never reaches the agent, and other listeners still run.
- Every `RunStart` is followed by exactly one `RunEnd` with the same `run_id`. When the
  framework never reports an inner run's end (a cancelled asyncio task skips it), the handler
  sends that `RunEnd` when the agent run ends, with the agent run's error or an
  `UnfinishedRunError`. A run whose agent run the handler never saw start gets no such end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import UUID

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

RunKind = Literal["agent", "node", "chain", "llm", "tool"]


@dataclass(frozen=True, slots=True)
class RunStart:
    """A run began.

    Attributes:
        run_id: The framework's run id.
        parent_run_id: The enclosing run, or None for the agent run.
        trace_id: Id of the agent run this run belongs to.
        kind: `agent` for the root run, `node` for a graph node's run, `chain` for other
            runnables, `llm` for a model call, `tool` for a tool call.
        name: Run name: graph name, node name, model class or tool name.
        node: Node path (`outer/inner` inside subgraphs), when inside a graph.
        step: Graph step of the node, when inside a graph.
        start_time_ns: Wall-clock start in nanoseconds since the epoch (`time.time_ns()`).
        metadata: The framework's run metadata, as received; read it, do not keep or change it.
    """

    run_id: UUID
    parent_run_id: UUID | None
    trace_id: UUID
    kind: RunKind
    name: str | None
    node: str | None
    step: int | None
    start_time_ns: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A run finished, failed or was cancelled.

    Attributes:
        run_id: The run id from the matching `RunStart`.
        kind: The same kind as in `RunStart`.
        end_time_ns: Wall-clock end in nanoseconds since the epoch.
        error: The exception when the run failed; None on success and for framework control
            flow such as a LangGraph interrupt.
        record: For `llm` runs, the call record as stored (after redaction); None when the
            record was dropped or for other kinds.
    """

    run_id: UUID
    kind: RunKind
    end_time_ns: int
    error: BaseException | None = None
    record: CallRecord | None = None


@runtime_checkable
class RunListener(Protocol):
    """Receives run events from a capture handler; see the module docstring for the contract."""

    def on_run_start(self, event: RunStart) -> None:
        """Handle the start of a run."""

    def on_run_end(self, event: RunEnd) -> None:
        """Handle the end of a run."""
