"""A LlamaIndex AgentWorkflow captured, analysed and swapped to an SLM, on BANKING77 requests.

The workflow has one `FunctionAgent`, `router`, that classifies a bank customer's request into
one of the 77 BANKING77 intents. Its teacher is llama-index-core's `MockFunctionCallingLLM`
with a response generator that answers with the dataset's recorded intent: a stand-in, because
no hosted LLM can be reached offline. The script

1. runs `--requests` training-split requests through the workflow with `LlamaIndexTraceHandler`
   attached, so every LLM call lands in the trace store under the agent's name;
2. curates the records and trains the classical and compact candidates for the `router` agent;
3. scores them on held-out test-split requests (captured from the teacher the same way);
4. writes a `ConversionPlan` and calls `swap_agent_models`, then runs the held-out requests
   through the swapped workflow and reports its agreement with the teacher.

    python examples/llama_index_agent/run.py --requests 2000 --out .slmshift/llama_index
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms.mock import MockFunctionCallingLLM

from slmshift.callbacks.llama_index import LlamaIndexTraceHandler
from slmshift.converters.llama_index import swap_agent_models
from slmshift.converters.plan import ConversionPlan, FallbackPolicy, NodePlan
from slmshift.curation import curate
from slmshift.demo.datasets import IntentExample, banking77_labels, load_banking77
from slmshift.demo.prompts import router_system_prompt
from slmshift.demo.scoring import answer_records, score
from slmshift.demo.training import train_candidates
from slmshift.records import CallRecord
from slmshift.slm import load_slm
from slmshift.store import TraceStore
from slmshift.store.base import MemoryTraceStore

logger = logging.getLogger(__name__)

AGENT = "llama-support"
ROUTER = "router"


def teacher_llm(examples: Sequence[IntentExample]) -> MockFunctionCallingLLM:
    """Return the stand-in teacher: a mock function-calling LLM answering recorded intents."""
    answers = {example.text.strip(): example.label for example in examples}

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        request = next(
            (str(message.content).strip() for message in reversed(messages) if message.role == MessageRole.USER),
            "",
        )
        return ChatMessage(role=MessageRole.ASSISTANT, content=answers.get(request, "unknown"))

    return MockFunctionCallingLLM(response_generator=respond, is_chat_model=True)


def build_workflow(llm: Any) -> AgentWorkflow:
    """Return a one-agent workflow whose `router` classifies a request into an intent."""
    router = FunctionAgent(
        name=ROUTER,
        description="Classifies a bank customer's request into one intent.",
        system_prompt=router_system_prompt(banking77_labels()),
        llm=llm,
        tools=[],
    )
    return AgentWorkflow(agents=[router], root_agent=ROUTER)


async def run_requests(workflow: AgentWorkflow, examples: Sequence[IntentExample]) -> list[str]:
    """Send each request through `workflow` in turn; return the final answers."""
    answers = []
    for example in examples:
        response = await workflow.run(user_msg=example.text)
        answers.append(str(response).strip())
    return answers


def capture(workflow: AgentWorkflow, examples: Sequence[IntentExample], store: Any) -> list[str]:
    """Run `examples` with `LlamaIndexTraceHandler` installed; return the answers."""
    with LlamaIndexTraceHandler(store, agent=AGENT):
        answers = asyncio.run(run_requests(workflow, examples))
    store.flush()
    return answers


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="training-split requests to capture (default: 2000)")
    parser.add_argument("--holdout", type=int, default=200, help="test-split requests to judge on (default: 200)")
    parser.add_argument("--out", default=".slmshift/llama_index", help="output folder (default: .slmshift/llama_index)")
    parser.add_argument("--fast", action="store_true", help="fewer epochs for the compact model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    train_examples = load_banking77("train", limit=args.requests)
    holdout_examples = load_banking77("test", limit=args.holdout)
    teacher = teacher_llm([*train_examples, *holdout_examples])
    workflow = build_workflow(teacher)
    print(
        "Teacher: llama-index-core's MockFunctionCallingLLM answering with BANKING77's recorded "
        "intents, a stand-in for a hosted LLM (none is reachable offline)."
    )

    store = TraceStore(out / "traces.db")
    started = time.perf_counter()
    capture(workflow, train_examples, store)
    records = [record for record in store.records(agent=AGENT) if record.node == ROUTER]
    print(f"Captured {len(records)} calls of agent {ROUTER!r} in {time.perf_counter() - started:.1f} s.")

    curated, report = curate(records)
    print(report.summary())
    holdout_store = MemoryTraceStore()
    capture(workflow, holdout_examples, holdout_store)
    holdout = [record for record in holdout_store.records() if record.node == ROUTER]

    chosen = train_router(curated, out / "models", fast=args.fast)
    figures = score(answer_records(load_slm(chosen.model_dir), holdout), chosen.min_confidence)
    print(
        f"{chosen.kind} model on {figures.examples} held-out calls: {figures.agreement:.1%} "
        f"agreement with the teacher ({figures.coverage:.1%} of calls above its confidence floor)."
    )

    plan_path = write_plan(chosen, out / "plan.yaml")
    swapped = swap_agent_models(workflow, plan_path)
    answers = asyncio.run(run_requests(swapped, holdout_examples))
    agreed = sum(answer == example.label for answer, example in zip(answers, holdout_examples))
    print(
        f"Swapped workflow: {agreed}/{len(answers)} held-out answers agree with the teacher "
        f"(the router is served by the SLM alone: LlamaIndex agents have no fallback yet). "
        f"Plan: {plan_path}"
    )
    store.close()
    return 0


def train_router(curated: list[CallRecord], models_dir: Path, *, fast: bool) -> Any:
    """Train the router's candidates on the curated records; return the one chosen on validation."""
    chosen, candidates = train_candidates(
        ROUTER, curated, models_dir, fast=fast, seed=0, say=lambda message: logger.info("%s", message),
    )
    for candidate in candidates:
        print(f"  {candidate.kind}: {candidate.validation['agreement']:.1%} agreement on validation")
    return chosen


def write_plan(chosen: Any, path: Path) -> Path:
    """Write a plan that serves `chosen` for the router agent, alone (mode `none`)."""
    entry = NodePlan(
        node=ROUTER,
        task=f"{ROUTER}/0",
        adapter=str(Path(chosen.model_dir).resolve()),
        validation={"labels": chosen.labels},
        fallback=FallbackPolicy(mode="none"),
    )
    return ConversionPlan(nodes=(entry,), agent=AGENT).save(path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
