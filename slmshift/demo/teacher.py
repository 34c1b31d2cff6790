"""The demo's teacher: the replay model offline, or an OpenAI-compatible server when given.

Answers from the teacher are the labels every SLM learns from, so the demo states which teacher
it uses. Offline, the replay model answers with the datasets' recorded intents and BFCL calls;
it is not a language model and its latency is not a hosted model's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slmshift.demo.datasets import FunctionCallExample, IntentExample
from slmshift.demo.support_agent import SupportTeacher, replay_teacher

logger = logging.getLogger(__name__)

REPLAY_NOTE = (
    "Teacher: a replay model that answers with the datasets' recorded intents (BANKING77) and "
    "function calls (BFCL); no hosted LLM is called. Its latency is not a hosted model's, and "
    "its token counts are estimates."
)


def build_teacher(
    *,
    banking: Sequence[IntentExample],
    bfcl: Sequence[FunctionCallExample],
    base_url: str | None = None,
    model: str | None = None,
) -> tuple[SupportTeacher, str]:
    """Return the teacher's three node models and one line that says what the teacher is.

    The replay teacher gets every request of the run (captured and held out), since it stands in
    for a model that could answer any of them.

    Raises:
        ValueError: `base_url` is given without `model`.
        ImportError: `base_url` is given but langchain-openai is not installed.
    """
    if base_url is None:
        return replay_teacher(banking=banking, bfcl=bfcl), REPLAY_NOTE
    if not model:
        raise ValueError(
            f"--teacher-base-url {base_url!r} needs --teacher-model NAME: the model the server serves."
        )
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise ImportError(
            "--teacher-base-url needs langchain-openai: run `pip install langchain-openai`, or "
            "drop the option to use the replay teacher."
        ) from exc
    chat = ChatOpenAI(base_url=base_url, model=model, temperature=0)
    return SupportTeacher(router=chat, tool_caller=chat, responder=chat), f"Teacher: {model} at {base_url}."


def teacher_model_names(teacher: SupportTeacher) -> frozenset[str]:
    """Return the model names the teacher's calls are recorded under."""
    names = set()
    for model in teacher:
        for attribute in ("model_name", "model"):
            value = getattr(model, attribute, None)
            if isinstance(value, str) and value:
                names.add(value)
                break
    return frozenset(names)
