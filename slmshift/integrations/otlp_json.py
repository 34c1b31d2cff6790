"""Read OTLP JSON trace files, as the OpenTelemetry Collector's `file` exporter writes them.

Each line is one `ExportTraceServiceRequest` in the OTLP/JSON encoding:
`{"resourceSpans": [{"resource": {...}, "scopeSpans": [{"spans": [...]}]}]}`, attributes as
lists of `{"key", "value": AnyValue}`, times as decimal strings of Unix nanoseconds, and
trace and span ids as hex strings. A file holding one pretty-printed request is read too, and
ids in base64 (protobuf's generic JSON mapping) are accepted.

Model-call spans become call records through the same conversion as `TraceStoreSpanExporter`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from slmshift.integrations._span_records import SpanData
from slmshift.records import CallRecord, RecordError

logger = logging.getLogger(__name__)

STATUS_CODE_ERROR = 2


def read_otlp_json(text: str, name: str = "<otlp-json>") -> list[CallRecord]:
    """Parse OTLP JSON text and return the call records of its model-call spans.

    Raises:
        RecordError: a line is not JSON or not an OTLP trace request; the message names the
            line, and nothing is returned.
    """
    from slmshift.integrations.opentelemetry import TraceStoreSpanExporter
    from slmshift.store.base import MemoryTraceStore

    store = MemoryTraceStore()
    bridge = TraceStoreSpanExporter(store)
    for span in iter_spans(text, name):
        if not bridge.consume(span):
            raise RecordError(f"{name}: span {span.span_id} ({span.name}) could not be converted; see the log.")
    bridge.force_flush()
    return list(store.records())


def iter_spans(text: str, name: str = "<otlp-json>") -> Iterator[SpanData]:
    """Yield every span of the OTLP JSON text, in file order."""
    for line_number, request in _requests(text, name):
        try:
            yield from _request_spans(request)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordError(
                f"{name}, line {line_number}: not an OTLP trace request ({exc!r}). Each line must "
                "be one ExportTraceServiceRequest in OTLP/JSON, as the collector's file exporter "
                "writes; nothing was imported."
            ) from exc


def _requests(text: str, name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    stripped = text.strip()
    if stripped.startswith("{") and "\n" in stripped:
        try:
            whole = json.loads(stripped)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, Mapping):
            yield 1, whole
            return
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(
                f"{name}, line {line_number}: invalid JSON ({exc.msg} at column {exc.colno}); "
                "nothing was imported."
            ) from exc
        if not isinstance(request, Mapping) or "resourceSpans" not in request:
            raise RecordError(
                f"{name}, line {line_number}: no resourceSpans key, so not an OTLP trace request; "
                "nothing was imported."
            )
        yield line_number, request


def _request_spans(request: Mapping[str, Any]) -> Iterator[SpanData]:
    for resource_spans in request.get("resourceSpans") or ():
        resource = attributes_from_otlp((resource_spans.get("resource") or {}).get("attributes"))
        for scope_spans in resource_spans.get("scopeSpans") or ():
            for span in scope_spans.get("spans") or ():
                yield _span(span, resource)


def _span(span: Mapping[str, Any], resource: Mapping[str, Any]) -> SpanData:
    status = span.get("status") or {}
    error = None
    if _status_is_error(status.get("code")):
        error = status.get("message") or "error"
    parent = span.get("parentSpanId")
    end = span.get("endTimeUnixNano")
    return SpanData(
        name=str(span.get("name", "")),
        trace_id=_hex_id(span["traceId"], 16),
        span_id=_hex_id(span["spanId"], 8),
        parent_span_id=_hex_id(parent, 8) if parent else None,
        start_ns=int(span.get("startTimeUnixNano") or 0),
        end_ns=int(end) if end else None,
        attributes=attributes_from_otlp(span.get("attributes")),
        error=error,
        resource=resource,
    )


def attributes_from_otlp(items: Any) -> dict[str, Any]:
    """Convert an OTLP `[{"key", "value": AnyValue}]` list to a plain dict."""
    return {item["key"]: any_value(item.get("value") or {}) for item in items or ()}


def any_value(value: Mapping[str, Any]) -> Any:
    """Convert one OTLP/JSON `AnyValue` to a Python value (arrays become tuples)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return tuple(any_value(item) for item in (value["arrayValue"] or {}).get("values") or ())
    if "kvlistValue" in value:
        return attributes_from_otlp((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def _hex_id(value: str, size: int) -> str:
    text = str(value)
    if len(text) == size * 2:
        try:
            bytes.fromhex(text)
            return text.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid id {text!r}: expected {size * 2} hex digits") from exc
    if len(raw) != size:
        raise ValueError(f"invalid id {text!r}: expected {size} bytes, got {len(raw)}")
    return raw.hex()


def _status_is_error(code: Any) -> bool:
    return code == STATUS_CODE_ERROR or code == "STATUS_CODE_ERROR"
