"""Prompts of the example support agent's nodes, shared by the agent and by the demo's tests."""

from __future__ import annotations

from collections.abc import Sequence

ROUTER_NODE = "router"
TOOL_NODE = "tool_caller"
RESPONDER_NODE = "responder"


def router_system_prompt(labels: Sequence[str]) -> str:
    """Return the router's system prompt: classify one banking request into one intent."""
    return (
        "You are the router of a bank's customer-support assistant. Classify the customer's "
        "request into exactly one of these intents and answer with the intent name only:\n"
        + "\n".join(labels)
    )


TOOL_SYSTEM_PROMPT = (
    "You turn the user's request into calls of the functions provided. Call every function "
    "the request needs, with arguments taken from the request."
)

RESPONDER_SYSTEM_PROMPT = (
    "You write the final reply to a bank customer in two or three friendly sentences, "
    "based on the request's intent and any tool results."
)
