"""SLMs served by an OpenAI-compatible endpoint, such as vLLM serving many LoRA adapters.

vLLM serves one base model with any number of LoRA adapters (`--enable-lora --lora-modules
name=path ...`) and selects the adapter by the request's `model` field, so each graph node gets
its own adapter name on one shared server. `OpenAICompatGenerator` is an `SLMGenerator` over
`/v1/chat/completions`; `endpoint_chat_model` wraps it in `SLMChatModel`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx

from slmshift.records import Message, ToolCall, ToolDefinition
from slmshift.slm.base import Generation, SLMManifest
from slmshift.slm.toolcalls import parse_tool_calls

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0


class EndpointError(RuntimeError):
    """The OpenAI-compatible endpoint failed or returned an invalid answer."""


class OpenAICompatGenerator:
    """An `SLMGenerator` that sends chat completions to `base_url` with `model=adapter`.

    `confidence` is the product of the returned token probabilities when the server honours
    `logprobs` (vLLM does), else None. Thread contract: safe to call from several threads.
    """

    def __init__(
        self,
        base_url: str,
        adapter: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_new_tokens: int = 256,
        supports_tools: bool = True,
        manifest: SLMManifest | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = adapter
        self.adapter = adapter
        self.max_new_tokens = max_new_tokens
        self.supports_tools = supports_tools
        self.manifest = manifest or SLMManifest(
            kind="lora", base_model=adapter, extra={"endpoint": self.base_url, "adapter": adapter}
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        started = time.perf_counter()
        payload = self._payload(messages, tools, max_new_tokens, stream=False)
        data = self._post(payload)
        try:
            choice = data["choices"][0]
            message = _message_from_openai(choice["message"], tools)
        except (KeyError, IndexError, TypeError) as exc:
            raise EndpointError(f"Invalid chat completion from {self.base_url}: {data!r:.300}") from exc
        usage = data.get("usage") or {}
        finish_reason = "tool_calls" if message.tool_calls else (choice.get("finish_reason") or "stop")
        return Generation(
            message=message,
            confidence=_confidence(choice.get("logprobs")),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            finish_reason=finish_reason,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def stream(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[str | Generation]:
        """Yield text deltas from a server-sent-event stream, then the final `Generation`."""
        started = time.perf_counter()
        payload = self._payload(messages, tools, max_new_tokens, stream=True)
        parts: list[str] = []
        logprobs: list[float] = []
        usage: dict[str, Any] = {}
        finish_reason = "stop"
        with self._client.stream("POST", f"{self.base_url}/chat/completions", json=payload) as response:
            _raise_for_status(response, self.base_url)
            for event in _sse_events(response.iter_lines()):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    finish_reason = choice.get("finish_reason") or finish_reason
                    logprobs.extend(_token_logprobs(choice.get("logprobs")))
                    if delta:
                        parts.append(delta)
                        yield delta
        message = _message_from_openai({"content": "".join(parts)}, tools)
        yield Generation(
            message=message,
            confidence=math.exp(sum(logprobs)) if logprobs else None,
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            finish_reason=finish_reason,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def close(self) -> None:
        self._client.close()

    def _payload(
        self,
        messages: list[Message],
        tools: list[ToolDefinition] | None,
        max_new_tokens: int | None,
        *,
        stream: bool,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.adapter,
            "messages": [message.to_openai() for message in messages],
            "max_tokens": max_new_tokens or self.max_new_tokens,
            "temperature": 0,
            "logprobs": True,
        }
        if tools:
            payload["tools"] = [tool.to_openai() for tool in tools]
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        try:
            response = self._client.post(url, json=payload)
        except httpx.HTTPError as exc:
            raise EndpointError(f"Request to {url} failed: {exc}") from exc
        _raise_for_status(response, self.base_url)
        try:
            return response.json()
        except ValueError as exc:
            raise EndpointError(f"{url} returned non-JSON text: {response.text[:200]!r}") from exc


def endpoint_chat_model(base_url: str, adapter: str, **options: Any) -> Any:
    """Return an `SLMChatModel` served by the adapter `adapter` at `base_url` (e.g. `http://host:8000/v1`)."""
    from slmshift.integrations.langchain import SLMChatModel

    model_options = {key: options.pop(key) for key in ("max_new_tokens",) if key in options}
    return SLMChatModel(generator=OpenAICompatGenerator(base_url, adapter, **options), **model_options)


def _message_from_openai(data: dict[str, Any], tools: list[ToolDefinition] | None) -> Message:
    content = data.get("content") or ""
    calls = []
    for index, call in enumerate(data.get("tool_calls") or ()):
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else dict(raw)
            calls.append(ToolCall(name=function["name"], arguments=arguments, id=call.get("id") or f"call_{index}"))
        except (json.JSONDecodeError, TypeError, ValueError):
            calls.append(ToolCall(name=function.get("name", ""), id=call.get("id"), arguments_raw=str(raw)))
    if not calls and tools:
        content, calls = parse_tool_calls(content, {tool.name for tool in tools})
    return Message(role="assistant", content=content, tool_calls=tuple(calls))


def _token_logprobs(logprobs: Any) -> list[float]:
    if not isinstance(logprobs, dict):
        return []
    return [float(item["logprob"]) for item in logprobs.get("content") or () if "logprob" in item]


def _confidence(logprobs: Any) -> float | None:
    values = _token_logprobs(logprobs)
    return math.exp(sum(values)) if values else None


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        body = line[len("data:"):].strip()
        if body == "[DONE]":
            return
        try:
            yield json.loads(body)
        except json.JSONDecodeError:
            logger.warning("Skipped an invalid stream event: %.120s", body)


def _raise_for_status(response: httpx.Response, base_url: str) -> None:
    if response.status_code >= 400:
        response.read()
        raise EndpointError(
            f"{base_url} returned HTTP {response.status_code}: {response.text[:300]!r}. "
            "Check that the server is running and serves this adapter name."
        )
