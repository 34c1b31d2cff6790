"""Span attribute keys that slmshift writes and reads, in one place.

The `gen_ai.*` keys follow the OpenTelemetry GenAI semantic conventions (development status,
as published with semantic-conventions 1.37 and later): message content goes in the JSON
attributes `gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions`,
each message being `{"role", "parts": [...]}`. The `llm.*`, `input.*` and `metadata` keys are
OpenInference's (openinference-semantic-conventions 0.1). The `gen_ai.prompt.N.*` and
`traceloop.*` keys are the indexed form that OpenLLMetry releases before 0.50 wrote.
"""

from __future__ import annotations

# -- GenAI semantic conventions ---------------------------------------------------------------

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
# Older name of `gen_ai.provider.name`; still written by many instrumentations.
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
ERROR_TYPE = "error.type"

# Values of `gen_ai.operation.name`.
OPERATION_CHAT = "chat"
OPERATION_TEXT_COMPLETION = "text_completion"
OPERATION_EXECUTE_TOOL = "execute_tool"
OPERATION_INVOKE_AGENT = "invoke_agent"
MODEL_CALL_OPERATIONS = frozenset({OPERATION_CHAT, OPERATION_TEXT_COMPLETION, "generate_content"})

# Request parameter name, as frameworks pass it, to its GenAI attribute.
REQUEST_PARAMETER_ATTRIBUTES = {
    "temperature": GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": GEN_AI_REQUEST_MAX_TOKENS,
    "top_p": GEN_AI_REQUEST_TOP_P,
    "top_k": GEN_AI_REQUEST_TOP_K,
    "stop": GEN_AI_REQUEST_STOP_SEQUENCES,
    "frequency_penalty": GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": GEN_AI_REQUEST_PRESENCE_PENALTY,
    "seed": GEN_AI_REQUEST_SEED,
}

# -- slmshift's own keys ----------------------------------------------------------------------

SLMSHIFT_NODE = "slmshift.node"
SLMSHIFT_RECORD_ID = "slmshift.record.id"
SLMSHIFT_OUTPUT_KIND = "slmshift.output_kind"
SLMSHIFT_STEP = "slmshift.step"
LANGGRAPH_NODE = "langgraph.node"
LLAMA_INDEX_STEP = "llama_index.step"

# -- OpenInference ----------------------------------------------------------------------------

OI_SPAN_KIND = "openinference.span.kind"
OI_SPAN_KIND_LLM = "LLM"
OI_MODEL_NAME = "llm.model_name"
OI_PROVIDER = "llm.provider"
OI_SYSTEM = "llm.system"
OI_INVOCATION_PARAMETERS = "llm.invocation_parameters"
OI_INPUT_MESSAGES = "llm.input_messages"
OI_OUTPUT_MESSAGES = "llm.output_messages"
OI_TOOLS = "llm.tools"
OI_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
OI_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
OI_METADATA = "metadata"
OI_SESSION_ID = "session.id"
# Suffixes under `llm.input_messages.N.` and `llm.output_messages.N.`.
OI_MESSAGE_ROLE = "message.role"
OI_MESSAGE_CONTENT = "message.content"
OI_MESSAGE_NAME = "message.name"
OI_MESSAGE_TOOL_CALL_ID = "message.tool_call_id"
OI_MESSAGE_CONTENTS = "message.contents"
OI_MESSAGE_TOOL_CALLS = "message.tool_calls"
OI_TOOL_CALL_ID = "tool_call.id"
OI_TOOL_CALL_NAME = "tool_call.function.name"
OI_TOOL_CALL_ARGUMENTS = "tool_call.function.arguments"
OI_TOOL_JSON_SCHEMA = "tool.json_schema"

# -- OpenLLMetry (Traceloop) ------------------------------------------------------------------

TRACELOOP_ASSOCIATION_PREFIX = "traceloop.association.properties."
LEGACY_PROMPT_PREFIX = "gen_ai.prompt"
LEGACY_COMPLETION_PREFIX = "gen_ai.completion"
LEGACY_FUNCTIONS_PREFIX = "llm.request.functions"
LEGACY_REQUEST_TYPE = "llm.request.type"
LEGACY_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
LEGACY_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"

# -- metadata keys that name the node ---------------------------------------------------------

NODE_METADATA_KEYS = ("langgraph_node", "slmshift_node", "agent_name")
