"""Run the example support agent on real requests and capture every model call.

The agent sends BANKING77 requests through its router and responder, and BFCL questions through
its tool caller. By default the teacher is a replay model that answers with the datasets'
recorded labels and calls, because no hosted LLM can be reached offline; with
`--teacher-base-url` the three nodes call an OpenAI-compatible server instead.

    python examples/support_agent/run.py --banking 300 --bfcl 200 --store .slmshift/traces.db
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from slmshift import TraceStore
from slmshift.demo.datasets import load_banking77, load_bfcl
from slmshift.demo.support_agent import SupportTeacher, replay_teacher, run_support_agent

logger = logging.getLogger(__name__)

AGENT_NAME = "support-bot"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banking", type=int, default=300, help="BANKING77 requests to run (default: 300)")
    parser.add_argument("--bfcl", type=int, default=200, help="BFCL questions to run (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for both datasets (default: 0)")
    parser.add_argument(
        "--store",
        default=".slmshift/traces.db",
        metavar="URL",
        help="trace store URL or SQLite path (default: .slmshift/traces.db)",
    )
    parser.add_argument(
        "--teacher-base-url",
        metavar="URL",
        help="OpenAI-compatible server for all three nodes, in place of the replay teacher",
    )
    parser.add_argument(
        "--teacher-model",
        default="gpt-4o-mini",
        help="model name sent to --teacher-base-url (default: gpt-4o-mini)",
    )
    return parser.parse_args(argv)


def openai_teacher(base_url: str, model: str) -> SupportTeacher:
    """Return a teacher whose three nodes call `model` at the OpenAI-compatible `base_url`."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise SystemExit(
            "--teacher-base-url needs langchain-openai, which is not installed: "
            "run `pip install langchain-openai`, or drop the option to use the replay teacher."
        ) from exc
    chat = ChatOpenAI(base_url=base_url, model=model, temperature=0)
    return SupportTeacher(router=chat, tool_caller=chat, responder=chat)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    banking = load_banking77("train", limit=args.banking, seed=args.seed)
    bfcl = load_bfcl(limit=args.bfcl, seed=args.seed)

    if args.teacher_base_url:
        teacher = openai_teacher(args.teacher_base_url, args.teacher_model)
        print(f"Teacher: {args.teacher_model} at {args.teacher_base_url}")
    else:
        teacher = replay_teacher(banking=banking, bfcl=bfcl)
        print(
            "Teacher: a replay model that answers with the datasets' recorded intent labels and "
            "function calls (no hosted LLM is called)."
        )

    store = TraceStore(args.store)
    run_support_agent(
        store,
        banking=banking,
        bfcl=bfcl,
        teacher=teacher,
        agent=AGENT_NAME,
        on_request=lambda count: print(f"  {count} requests") if count % 100 == 0 else None,
    )
    captured = store.count(agent=AGENT_NAME)
    store.close()
    print(
        f"Ran {len(banking)} banking requests and {len(bfcl)} function-calling questions; "
        f"the store {args.store} now holds {captured} calls of agent {AGENT_NAME!r}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
