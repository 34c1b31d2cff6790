"""Structured output through JSON mode plus schema validation, for models without tool calling.

`with_structured_output` on a provider model usually forces a tool call. A small model that was
never taught tool calling instead gets a `response_format` request (rendered into its prompt by
`SLMChatModel`), and its JSON answer is parsed and validated against the schema here.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import jsonschema
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ValidationError

from slmshift.integrations._lc_messages import message_text

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def schema_name_and_json(schema: dict[str, Any] | type) -> tuple[str, dict[str, Any]]:
    """Return the schema's name and its JSON schema, for pydantic classes, TypedDicts or dicts."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.__name__, schema.model_json_schema()
    if isinstance(schema, dict) and "parameters" in schema and "name" in schema:
        return schema["name"], schema["parameters"]
    if isinstance(schema, dict) and schema.get("type") == "function":
        return schema["function"]["name"], schema["function"].get("parameters", {})
    json_schema = convert_to_json_schema(schema)
    return str(json_schema.get("title", "output")), json_schema


def response_format_for(schema: dict[str, Any] | type) -> dict[str, Any]:
    """Build an OpenAI-style `response_format` that requests JSON matching `schema`."""
    name, json_schema = schema_name_and_json(schema)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema}}


def json_schema_from_response_format(response_format: Any) -> dict[str, Any] | None:
    """Return the JSON schema inside a `response_format`; None for plain JSON mode or no format."""
    if not isinstance(response_format, dict):
        return None
    inner = response_format.get("json_schema")
    if isinstance(inner, dict) and isinstance(inner.get("schema"), dict):
        return inner["schema"]
    return None


def parse_json_text(text: str) -> Any:
    """Parse a JSON answer, allowing a Markdown code fence around it.

    Raises:
        ValueError: the text is not JSON.
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    return json.loads(stripped)


class JsonSchemaOutputParser(BaseOutputParser[Any]):
    """Parse a JSON answer and validate it against a JSON schema, or into a pydantic class."""

    schema_: Any
    json_schema: dict[str, Any]

    def parse(self, text: str) -> Any:
        try:
            data = parse_json_text(text)
        except ValueError as exc:
            raise OutputParserException(f"The model response is not JSON: {exc}", llm_output=text) from exc
        try:
            jsonschema.validate(data, self.json_schema)
        except jsonschema.ValidationError as exc:
            raise OutputParserException(
                f"The model response does not match the schema: {exc.message}", llm_output=text
            ) from exc
        if isinstance(self.schema_, type) and issubclass(self.schema_, BaseModel):
            try:
                return self.schema_.model_validate(data)
            except ValidationError as exc:
                raise OutputParserException(str(exc), llm_output=text) from exc
        return data

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        if isinstance(input, BaseMessage):
            input = message_text(input)
        return super().invoke(input, config, **kwargs)

    @property
    def _type(self) -> str:
        return "slmshift_json_schema"


def json_mode_structured_output(
    model: BaseChatModel, schema: dict[str, Any] | type, *, include_raw: bool = False
) -> Runnable:
    """Build `model` bound to a JSON `response_format`, piped into a validating parser.

    The result matches what `BaseChatModel.with_structured_output` returns: the parsed value,
    or with `include_raw` a dict of `raw`, `parsed` and `parsing_error`.
    """
    _, json_schema = schema_name_and_json(schema)
    bound = model.bind(
        response_format=response_format_for(schema),
        ls_structured_output_format={"kwargs": {"method": "json_schema"}, "schema": schema},
    )
    parser = JsonSchemaOutputParser(schema_=schema, json_schema=json_schema)
    if not include_raw:
        return bound | parser

    parse_raw = RunnablePassthrough.assign(parsed=lambda value: parser.invoke(value["raw"]), parsing_error=lambda _: None)
    no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parse_raw.with_fallbacks([no_parse], exception_key="parsing_error")
