"""The `hf` and `lora` SLM kinds: a transformers causal LM, optionally with a peft adapter.

A `hf` directory contains a full model and its tokenizer. A `lora` directory contains a peft adapter
(`adapter_config.json` plus weights) whose base is `manifest.base_model` (a hub id or a local
path), and optionally a tokenizer. The chat template is the manifest's when it has one, else
the tokenizer's. Tools are passed to the template; a template that never mentions tools gets
them described in the system message instead. Tool calls are parsed from the Hermes/Qwen
`<tool_call>` form or from a plain-JSON answer (see `slmshift.slm.toolcalls`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slmshift.records import Message, ToolDefinition
from slmshift.slm.base import Generation, ManifestError, SLMManifest
from slmshift.slm.toolcalls import format_tool_call, parse_tool_calls, tools_system_prompt

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 256
ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


class HFGenerator:
    """Greedy generation with a causal LM; `confidence` is the probability of the whole answer.

    Thread contract: calls are serialised by a lock, because a torch model is not safe to run
    from several threads at once.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        manifest: SLMManifest,
        *,
        name: str,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.supports_tools = manifest.output_kind in (None, "tool_call")
        self._lock = threading.Lock()
        self._template_renders_tools = "tools" in (tokenizer.chat_template or "")

    # -- public -------------------------------------------------------------------------------

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        started = time.perf_counter()
        input_ids = self._encode(messages, tools)
        limit = max_new_tokens or self.max_new_tokens
        with self._lock:
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=self._torch().ones_like(input_ids),
                max_new_tokens=limit,
                do_sample=False,
                return_dict_in_generate=True,
                output_scores=True,
                pad_token_id=self._pad_token_id(),
            )
        new_tokens = output.sequences[0, input_ids.shape[1]:]
        confidence = self._sequence_probability(output)
        return self._finish(new_tokens, tools, input_ids.shape[1], limit, confidence, started)

    def stream(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[str | Generation]:
        """Yield text deltas as they are generated, then the final `Generation`."""
        from transformers import TextIteratorStreamer

        started = time.perf_counter()
        input_ids = self._encode(messages, tools)
        limit = max_new_tokens or self.max_new_tokens
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._lock:
                    result["output"] = self.model.generate(
                        input_ids=input_ids,
                        attention_mask=self._torch().ones_like(input_ids),
                        max_new_tokens=limit,
                        do_sample=False,
                        return_dict_in_generate=True,
                        output_scores=True,
                        pad_token_id=self._pad_token_id(),
                        streamer=streamer,
                    )
            except Exception as exc:  # re-raised in the caller's thread below
                result["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name=f"slmshift-stream-{self.name}", daemon=True)
        worker.start()
        for text in streamer:
            if text:
                yield text
        worker.join()
        if "error" in result:
            raise result["error"]
        output = result["output"]
        new_tokens = output.sequences[0, input_ids.shape[1]:]
        confidence = self._sequence_probability(output)
        yield self._finish(new_tokens, tools, input_ids.shape[1], limit, confidence, started)

    # -- steps --------------------------------------------------------------------------------

    def render_prompt(self, messages: list[Message], tools: list[ToolDefinition] | None) -> str:
        """Render the chat template for `messages` and `tools`, ending with the generation prompt."""
        conversation = [_template_message(message) for message in messages]
        template_tools = None
        if tools and self._template_renders_tools:
            template_tools = [tool.to_openai() for tool in tools]
        elif tools:
            conversation = _prepend_system(conversation, tools_system_prompt(tools))
        return self.tokenizer.apply_chat_template(
            conversation, tools=template_tools, add_generation_prompt=True, tokenize=False
        )

    def _encode(self, messages: list[Message], tools: list[ToolDefinition] | None) -> Any:
        if not messages:
            raise ValueError("SLM generation needs at least one message.")
        prompt = self.render_prompt(messages, tools)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        return encoded["input_ids"].to(self.model.device)

    def _finish(
        self,
        new_tokens: Any,
        tools: list[ToolDefinition] | None,
        input_length: int,
        limit: int,
        confidence: float | None,
        started: float,
    ) -> Generation:
        token_ids = new_tokens.tolist()
        eos_ids = self._eos_token_ids()
        stopped = bool(token_ids) and token_ids[-1] in eos_ids
        finish_reason = "stop" if stopped or len(token_ids) < limit else "length"
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True).strip()

        calls = []
        if tools:
            text, calls = parse_tool_calls(text, {tool.name for tool in tools})
        if calls:
            finish_reason = "tool_calls"
        return Generation(
            message=Message(role="assistant", content=text, tool_calls=tuple(calls)),
            confidence=confidence,
            input_tokens=input_length,
            output_tokens=len(token_ids),
            finish_reason=finish_reason,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _sequence_probability(self, output: Any) -> float | None:
        torch = self._torch()
        if not output.scores:
            return None
        scores = self.model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
        return float(torch.exp(scores[0].float().sum()).item())

    def _eos_token_ids(self) -> set[int]:
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(configured, list):
            ids = set(configured)
        else:
            ids = {configured} if configured is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _pad_token_id(self) -> int | None:
        if self.tokenizer.pad_token_id is not None:
            return self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id

    @staticmethod
    def _torch() -> Any:
        import torch

        return torch


def load(directory: Path, manifest: SLMManifest, **options: Any) -> HFGenerator:
    """Load a `hf` or `lora` directory.

    Options: `base_model` (replaces the manifest's base, for a local copy), `device`
    (default `cpu`), `torch_dtype`, `max_new_tokens`, `name`.

    Raises:
        ManifestError: a `lora` directory without an adapter, or no chat template anywhere.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = options.pop("device", "cpu")
    dtype = options.pop("torch_dtype", None)
    base = str(options.pop("base_model", None) or manifest.base_model)
    model_kwargs = {"dtype": dtype} if dtype is not None else {}

    if manifest.kind == "lora":
        if not (directory / ADAPTER_CONFIG).is_file():
            raise ManifestError(
                f"{directory} is a lora SLM without {ADAPTER_CONFIG}: save the peft adapter there."
            )
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(base, **model_kwargs)
        model = PeftModel.from_pretrained(model, str(directory))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(directory), **model_kwargs)
    model.to(device)
    model.eval()

    tokenizer_source = str(directory) if (directory / TOKENIZER_CONFIG).is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    if manifest.chat_template:
        tokenizer.chat_template = manifest.chat_template
    if not tokenizer.chat_template:
        raise ManifestError(
            f"No chat template for the SLM in {directory}: set `chat_template` in its manifest."
        )
    return HFGenerator(
        model,
        tokenizer,
        manifest,
        name=str(options.pop("name", None) or manifest.task or directory.name),
        max_new_tokens=int(options.pop("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
    )


def _template_message(message: Message) -> dict[str, Any]:
    item: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.tool_calls:
        item["tool_calls"] = [
            {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
        if not message.text:
            item["content"] = "\n".join(format_tool_call(call) for call in message.tool_calls)
    if message.tool_call_id is not None:
        item["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        item["name"] = message.name
    return item


def _prepend_system(conversation: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if conversation and conversation[0]["role"] == "system":
        first = dict(conversation[0])
        first["content"] = f"{first['content']}\n\n{text}"
        return [first, *conversation[1:]]
    return [{"role": "system", "content": text}, *conversation]
