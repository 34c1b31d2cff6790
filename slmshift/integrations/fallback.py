"""`FallbackChatModel`: serve the SLM, check its answer, and hand failures to the large model.

Modes:
- `fallback`: the SLM answers; an answer that fails validation (or an SLM error) is replaced
  by the LLM's answer to the same messages, tools and output format.
- `shadow`: both run, the LLM's answer is served and the SLM's is compared with it.
- `canary`: a deterministic share (`canary_share`) of requests goes to the SLM, with
  fallback as above; the rest goes to the LLM. The same messages always take the same route.

Every decision becomes a `CallRecord` with `slmshift.decision`, `slmshift.fallback_reason`
and `slmshift.served_by` in its metadata, written to `store` (a `TraceStore` or any callable
taking a record), and the served message carries the same facts in
`response_metadata["slmshift"]`. LangGraph control flow raised inside a model call
(`GraphInterrupt`, `ParentCommand`) propagates untouched and never triggers a fallback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManager, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from slmshift.callbacks._stats import traceback_without_messages
from slmshift.integrations._lc_messages import (
    dumps_structured,
    to_record_message,
    to_record_messages,
    to_tool_definitions,
    tool_choice_name,
)
from slmshift.integrations._structured import (
    json_mode_structured_output,
    json_schema_from_response_format,
)
from slmshift.integrations.validation import (
    REASON_SLM_ERROR,
    OutputValidation,
    ValidationFailure,
    answers_agree,
    validation_from,
)
from slmshift.records import CallRecord, Usage, infer_output_kind

logger = logging.getLogger(__name__)

MODES = ("fallback", "shadow", "canary")
DECISION_SLM = "slm"
DECISION_FALLBACK = "fallback"
DECISION_SHADOW = "shadow"
DECISION_CANARY_LLM = "canary_llm"
METADATA_DECISION = "slmshift.decision"
METADATA_REASON = "slmshift.fallback_reason"
METADATA_SERVED_BY = "slmshift.served_by"
METADATA_AGREEMENT = "slmshift.agreement"
METADATA_SLM_RESPONSE = "slmshift.slm_response"
INNER_RUN_TAG = "slmshift:inner"

# Keys a binding adds for tracing only; they are not generation options of either model.
_TRACING_KWARGS = ("ls_structured_output_format",)


class FallbackChatModel(BaseChatModel):
    """A chat model that serves `slm` and falls back to `llm`; see the module docstring.

    Args:
        slm: The small model (usually an `SLMChatModel`).
        llm: The large model the node used before the swap.
        validate: An `OutputValidation` or a dict of its fields.
        mode: `fallback`, `shadow` or `canary`.
        canary_share: Share of requests the SLM serves in `canary` mode, from 0 to 1.
        min_confidence: Shortcut for `OutputValidation.min_confidence`.
        store: A `TraceStore` (records are added with `add`) or a callable taking a `CallRecord`.
        seed: Salt of the canary hash, so that different rollouts pick different requests.
        node: Node path written into records; by default taken from LangGraph's run metadata.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    slm: BaseChatModel
    llm: BaseChatModel
    validate_: OutputValidation = Field(default_factory=OutputValidation, alias="validate")
    mode: Literal["fallback", "shadow", "canary"] = "fallback"
    canary_share: float = 0.1
    store: Any = Field(default=None, exclude=True)
    seed: int = 0
    node: str | None = None

    def __init__(
        self,
        slm: BaseChatModel,
        llm: BaseChatModel,
        *,
        validate: OutputValidation | dict[str, Any] | None = None,
        mode: str = "fallback",
        canary_share: float = 0.1,
        min_confidence: float | None = None,
        store: Any = None,
        seed: int = 0,
        node: str | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Invalid mode {mode!r}: use one of {', '.join(MODES)}.")
        if not 0.0 <= canary_share <= 1.0:
            raise ValueError(f"Invalid canary_share {canary_share!r}: use a share between 0 and 1.")
        validation = validation_from(validate, min_confidence=min_confidence)
        super().__init__(
            slm=slm, llm=llm, validate=validation, mode=mode, canary_share=canary_share,
            store=store, seed=seed, node=node, **kwargs,
        )

    @property
    def validation(self) -> OutputValidation:
        return self.validate_

    @property
    def _llm_type(self) -> str:
        return "slmshift-fallback"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "slm": getattr(self.slm, "model_name", None) or type(self.slm).__name__,
            "llm": _model_name(self.llm),
            "mode": self.mode,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "slmshift"
        params["ls_model_name"] = _model_name(self.slm)
        return params

    @property
    def supports_tools(self) -> bool:
        return bool(getattr(self.slm, "supports_tools", True))

    # -- binding ------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools to this wrapper; each call binds them on the SLM and on the LLM alike."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output through tool calling when the SLM supports tools, else JSON mode.

        In JSON mode the LLM, when it serves, answers through its own `with_structured_output`.
        """
        if method is None:
            method = "function_calling" if self.supports_tools else "json_schema"
        if method in ("json_schema", "json_mode"):
            return json_mode_structured_output(self, schema, include_raw=include_raw)
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    # -- generation ---------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        options = {key: value for key, value in kwargs.items() if key not in _TRACING_KWARGS}
        if stop:
            options["stop"] = stop
        call = _Call(self, messages, options, run_manager)

        if self.mode == "shadow":
            served, metadata = call.shadow()
        elif self.mode == "canary" and not self._canary_picks_slm(messages):
            served = call.run_llm()
            metadata = {METADATA_DECISION: DECISION_CANARY_LLM, METADATA_SERVED_BY: "llm"}
        else:
            served, metadata = call.with_fallback()

        self._trace(call, served, metadata, started)
        served.response_metadata = {**served.response_metadata, "slmshift": dict(metadata)}
        return ChatResult(generations=[ChatGeneration(message=served)])

    def _canary_picks_slm(self, messages: list[BaseMessage]) -> bool:
        payload = json.dumps([message.model_dump(include={"type", "content"}) for message in messages], default=str)
        digest = hashlib.sha256(f"{self.seed}:{payload}".encode()).digest()
        share = int.from_bytes(digest[:8], "big") / 2**64
        return share < self.canary_share

    def _trace(self, call: _Call, served: AIMessage, metadata: dict[str, Any], started: float) -> None:
        if self.store is None:
            return
        try:
            record = call.record(served, metadata, latency_ms=(time.perf_counter() - started) * 1000)
            if callable(self.store):
                self.store(record)
            else:
                self.store.add(record)
        except Exception as exc:  # noqa: BLE001 - tracing must never break the agent
            # Exception messages may quote the request, so only types and frames are logged.
            logger.error(
                "Failed to record a fallback decision; the response is returned anyway.\n%s",
                traceback_without_messages(exc),
            )


class _Call:
    """One request to a `FallbackChatModel`: the messages, bound options and both models."""

    def __init__(
        self,
        owner: FallbackChatModel,
        messages: list[BaseMessage],
        options: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | None,
    ) -> None:
        self.owner = owner
        self.messages = messages
        self.options = options
        self.run_manager = run_manager
        self.tools = to_tool_definitions(options.get("tools"))
        self.tool_choice = tool_choice_name(options.get("tool_choice"))
        self.response_schema = json_schema_from_response_format(options.get("response_format"))

    # -- routes -------------------------------------------------------------------------------

    def with_fallback(self) -> tuple[AIMessage, dict[str, Any]]:
        slm_answer, failure = self._try_slm()
        if failure is None and slm_answer is not None:
            return slm_answer, {METADATA_DECISION: DECISION_SLM, METADATA_SERVED_BY: "slm"}

        assert failure is not None
        logger.info("SLM answer rejected (%s: %s); calling the LLM.", failure.reason, failure.detail)
        metadata: dict[str, Any] = {
            METADATA_DECISION: DECISION_FALLBACK,
            METADATA_SERVED_BY: "llm",
            METADATA_REASON: failure.reason,
            "slmshift.fallback_detail": failure.detail,
        }
        if slm_answer is not None:
            metadata[METADATA_SLM_RESPONSE] = to_record_message(slm_answer).to_dict()
        return self.run_llm(), metadata

    def shadow(self) -> tuple[AIMessage, dict[str, Any]]:
        served = self.run_llm()
        slm_answer, failure = self._try_slm()
        metadata: dict[str, Any] = {METADATA_DECISION: DECISION_SHADOW, METADATA_SERVED_BY: "llm"}
        if slm_answer is not None:
            metadata[METADATA_SLM_RESPONSE] = to_record_message(slm_answer).to_dict()
            metadata[METADATA_AGREEMENT] = answers_agree(to_record_message(slm_answer), to_record_message(served))
        else:
            metadata[METADATA_AGREEMENT] = False
        if failure is not None:
            metadata[METADATA_REASON] = failure.reason
            metadata["slmshift.fallback_detail"] = failure.detail
        return served, metadata

    # -- model calls --------------------------------------------------------------------------

    def _try_slm(self) -> tuple[AIMessage | None, ValidationFailure | None]:
        try:
            answer = self._bound(self.owner.slm, structured_llm=False).invoke(self.messages, self._config("slm"))
        except Exception as exc:
            if _is_control_flow(exc):
                raise
            logger.warning(
                "SLM call failed with %s; the LLM answers instead.\n%s",
                type(exc).__name__,
                traceback_without_messages(exc),
            )
            return None, ValidationFailure(REASON_SLM_ERROR, f"{type(exc).__name__}: {exc}")

        failure = self.owner.validation.check(
            to_record_message(answer),
            confidence=answer.response_metadata.get("confidence"),
            tools=self.tools,
            tool_choice=self.tool_choice,
            response_schema=self.response_schema,
        )
        return answer, failure

    def run_llm(self) -> AIMessage:
        result = self._bound(self.owner.llm, structured_llm=True).invoke(self.messages, self._config("llm"))
        if isinstance(result, AIMessage):
            return result
        # The LLM answered through its own with_structured_output: serve the value as JSON text.
        return AIMessage(content=dumps_structured(result), response_metadata={"model_name": _model_name(self.owner.llm)})

    def _bound(self, model: BaseChatModel, *, structured_llm: bool) -> Runnable:
        options = dict(self.options)
        tools = options.pop("tools", None)
        tool_choice = options.pop("tool_choice", None)
        response_format = options.pop("response_format", None)
        if response_format is not None and structured_llm:
            schema = self.response_schema or {"type": "object"}
            return model.with_structured_output(schema, **({"method": "json_mode"} if self.response_schema is None else {}))
        runnable: Runnable = model
        if tools:
            runnable = model.bind_tools(tools, tool_choice=tool_choice)
        if response_format is not None:
            options["response_format"] = response_format
        return runnable.bind(**options) if options else runnable

    def _config(self, role: str) -> dict[str, Any]:
        """Run the inner call as a child of this model run, tagged so that capture can tell it apart."""
        config: dict[str, Any] = {"tags": [INNER_RUN_TAG], "run_name": f"slmshift_{role}"}
        if self.run_manager is not None:
            manager = self.run_manager
            config["callbacks"] = CallbackManager(
                handlers=list(manager.inheritable_handlers),
                inheritable_handlers=list(manager.inheritable_handlers),
                parent_run_id=manager.run_id,
                tags=list(manager.inheritable_tags),
                inheritable_tags=list(manager.inheritable_tags),
                metadata=dict(manager.inheritable_metadata),
                inheritable_metadata=dict(manager.inheritable_metadata),
            )
        return config

    # -- tracing ------------------------------------------------------------------------------

    def record(self, served: AIMessage, metadata: dict[str, Any], *, latency_ms: float) -> CallRecord:
        response = to_record_message(served)
        usage = served.usage_metadata or {}
        run_metadata = dict(self.run_manager.metadata) if self.run_manager else {}
        served_by = self.owner.slm if metadata[METADATA_SERVED_BY] == "slm" else self.owner.llm
        return CallRecord(
            messages=tuple(to_record_messages(self.messages)),
            response=response,
            node=self.owner.node or node_path_from_metadata(run_metadata),
            model=_model_name(served_by),
            provider="slmshift" if served_by is self.owner.slm else None,
            tools=tuple(self.tools),
            output_kind=infer_output_kind(response),
            usage=Usage(usage.get("input_tokens"), usage.get("output_tokens")),
            latency_ms=latency_ms,
            finish_reason=served.response_metadata.get("finish_reason"),
            tool_choice=self.options.get("tool_choice"),
            response_format=self.options.get("response_format"),
            step=run_metadata.get("langgraph_step"),
            # NOTE: the agent run's root id is not visible from a model run, so trace_id stays
            # unset; parent_id links the record to the node run that made the call.
            parent_id=str(self.run_manager.parent_run_id) if self.run_manager and self.run_manager.parent_run_id else None,
            metadata={**metadata, "thread_id": run_metadata.get("thread_id")},
        )


def node_path_from_metadata(metadata: dict[str, Any]) -> str | None:
    """Return the `outer/inner` node path from LangGraph run metadata (`langgraph_checkpoint_ns`)."""
    namespace = metadata.get("langgraph_checkpoint_ns")
    if isinstance(namespace, str) and namespace:
        return "/".join(segment.split(":", 1)[0] for segment in namespace.split("|"))
    node = metadata.get("langgraph_node")
    return node if isinstance(node, str) else None


def _is_control_flow(exc: BaseException) -> bool:
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return False
    return isinstance(exc, GraphBubbleUp)


def _model_name(model: Any) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


