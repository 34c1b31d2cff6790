"""Checks an SLM answer must pass before it is served: label set, JSON schema, tools, confidence.

`OutputValidation.check` returns None for a valid answer, or a `ValidationFailure` whose `reason`
is one of the `REASON_*` constants below; `FallbackChatModel` records that reason with every
fallback so that the refresh loop can learn which answers the small model gets wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from slmshift.records import Message, ToolDefinition

logger = logging.getLogger(__name__)

REASON_SLM_ERROR = "slm_error"
REASON_EMPTY = "empty_answer"
REASON_INVALID_LABEL = "invalid_label"
REASON_INVALID_JSON = "invalid_json"
REASON_SCHEMA_MISMATCH = "schema_mismatch"
REASON_UNKNOWN_TOOL = "unknown_tool"
REASON_INVALID_TOOL_ARGUMENTS = "invalid_tool_arguments"
REASON_MISSING_TOOL_CALL = "missing_tool_call"
REASON_LOW_CONFIDENCE = "low_confidence"


@dataclass(frozen=True)
class ValidationFailure:
    """Why an answer was rejected: a `REASON_*` code and a readable detail."""

    reason: str
    detail: str


@dataclass(frozen=True)
class OutputValidation:
    """What a valid SLM answer looks like.

    Attributes:
        labels: Allowed answers of a label task; the answer text, stripped, must be one of them.
        json_schema: A JSON schema the answer text must parse into and match.
        check_tools: Whether tool calls must name a bound tool and match its parameter schema.
        min_confidence: Lowest accepted `response_metadata["confidence"]`. An answer without
            a confidence (the generator cannot report one) is accepted.
    """

    labels: frozenset[str] | None = None
    json_schema: dict[str, Any] | None = None
    check_tools: bool = True
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, frozenset):
            object.__setattr__(self, "labels", frozenset(self.labels))
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(
                f"Invalid min_confidence {self.min_confidence!r}: use a probability between 0 and 1."
            )
        if self.json_schema is not None:
            try:
                jsonschema.validators.validator_for(self.json_schema).check_schema(self.json_schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"Invalid json_schema: {exc.message}") from exc

    def check(
        self,
        message: Message,
        *,
        confidence: float | None = None,
        tools: Sequence[ToolDefinition] = (),
        tool_choice: str | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> ValidationFailure | None:
        """Return the first rule `message` breaks, or None when it is valid."""
        checks = (
            self._check_confidence(confidence),
            self._check_tool_calls(message, tools, tool_choice),
            self._check_content(message, tools, response_schema),
        )
        return next((failure for failure in checks if failure is not None), None)

    def _check_confidence(self, confidence: float | None) -> ValidationFailure | None:
        if self.min_confidence is None or confidence is None or confidence >= self.min_confidence:
            return None
        return ValidationFailure(
            REASON_LOW_CONFIDENCE, f"confidence {confidence:.3f} is below {self.min_confidence:.3f}"
        )

    def _check_tool_calls(
        self, message: Message, tools: Sequence[ToolDefinition], tool_choice: str | None
    ) -> ValidationFailure | None:
        if not message.tool_calls:
            if tools and tool_choice not in (None, "auto", "none"):
                return ValidationFailure(REASON_MISSING_TOOL_CALL, f"tool_choice {tool_choice!r} requires a tool call")
            return None
        if not self.check_tools:
            return None
        by_name = {tool.name: tool for tool in tools}
        for call in message.tool_calls:
            tool = by_name.get(call.name)
            if tool is None:
                return ValidationFailure(
                    REASON_UNKNOWN_TOOL, f"tool {call.name!r} is not among {sorted(by_name)}"
                )
            if call.arguments_raw is not None and not call.arguments:
                return ValidationFailure(
                    REASON_INVALID_TOOL_ARGUMENTS, f"arguments of {call.name!r} are not JSON"
                )
            failure = _schema_failure(call.arguments, tool.parameters, REASON_INVALID_TOOL_ARGUMENTS)
            if failure is not None:
                return ValidationFailure(failure.reason, f"{call.name}: {failure.detail}")
        return None

    def _check_content(
        self,
        message: Message,
        tools: Sequence[ToolDefinition],
        response_schema: dict[str, Any] | None,
    ) -> ValidationFailure | None:
        if message.tool_calls:
            return None
        text = message.text.strip()
        if not text:
            return ValidationFailure(REASON_EMPTY, "the answer has neither text nor tool calls")
        if self.labels is not None and text not in self.labels:
            return ValidationFailure(
                REASON_INVALID_LABEL, f"{text[:80]!r} is not one of {sorted(self.labels)}"
            )
        for schema in (self.json_schema, response_schema):
            if schema is None:
                continue
            try:
                data = _parse_json(text)
            except ValueError as exc:
                return ValidationFailure(REASON_INVALID_JSON, str(exc))
            failure = _schema_failure(data, schema, REASON_SCHEMA_MISMATCH)
            if failure is not None:
                return failure
        return None


def validation_from(value: OutputValidation | dict[str, Any] | None, *, min_confidence: float | None) -> OutputValidation:
    """Build an `OutputValidation` from an instance, a dict of its fields, or None."""
    if value is None:
        validation = OutputValidation()
    elif isinstance(value, OutputValidation):
        validation = value
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(OutputValidation.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"Unknown validation fields {unknown}: use labels, json_schema, check_tools or min_confidence."
            )
        validation = OutputValidation(**value)
    else:
        raise TypeError(
            f"validate must be an OutputValidation or a dict of its fields, got {type(value).__name__}."
        )
    if min_confidence is not None:
        validation = OutputValidation(
            labels=validation.labels,
            json_schema=validation.json_schema,
            check_tools=validation.check_tools,
            min_confidence=min_confidence,
        )
    return validation


def answers_agree(first: Message, second: Message) -> bool:
    """Return whether two responses agree: same tool calls, equal JSON, or equal text ignoring case and spaces."""
    if first.tool_calls or second.tool_calls:
        return _call_signature(first) == _call_signature(second)
    left, right = first.text.strip(), second.text.strip()
    try:
        return _parse_json(left) == _parse_json(right)
    except ValueError:
        return " ".join(left.lower().split()) == " ".join(right.lower().split())


def _call_signature(message: Message) -> list[tuple[str, str]]:
    return sorted((call.name, json.dumps(call.arguments, sort_keys=True)) for call in message.tool_calls)


def _parse_json(text: str) -> Any:
    from slmshift.integrations._structured import parse_json_text

    return parse_json_text(text)


def _schema_failure(data: Any, schema: dict[str, Any], reason: str) -> ValidationFailure | None:
    errors: Iterable[jsonschema.ValidationError] = jsonschema.validators.validator_for(schema)(schema).iter_errors(data)
    first = next(iter(errors), None)
    if first is None:
        return None
    where = "/".join(str(part) for part in first.absolute_path) or "the answer"
    return ValidationFailure(reason, f"{where}: {first.message}")
