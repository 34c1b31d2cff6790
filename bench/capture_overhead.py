"""Per-model-call overhead of capture on a 3-node LangGraph graph, side by side with its peers.

Configurations, each measured in its own subprocess so that instrumentation patches and
background threads of one cannot affect another:

- `none`: no callbacks (the baseline);
- `noop`: a callback handler that does nothing (the callback machinery alone);
- `slmshift-memory` / `slmshift-sqlite`: `LangChainTraceHandler` on the in-memory store and
  on the SQLite store (skipped while `slmshift.store.sqlite` does not exist);
- `slmshift-spans`: the handler with `tracer_provider=` (spans through the SDK's default
  `BatchSpanProcessor` into an in-memory exporter, exactly as the peers are set up);
- `slmshift-spans-queue`: the same with slmshift's `QueueSpanProcessor` (the processor of
  `otlp_tracer_provider`: an 8192-span queue that counts what it drops);
- `openinference`: Arize's `openinference-instrumentation-langchain`;
- `openllmetry`: Traceloop's `opentelemetry-instrumentation-langchain`.

The OTel configurations use the SDK's default `BatchSpanProcessor` and an
`InMemorySpanExporter`, so nothing leaves the machine. The model is langchain-core's
`FakeMessagesListChatModel` returning a fixed message and token usage.

Two measurements:
1. overhead: median microseconds per model call over several batches, per configuration,
   with configurations interleaved over `--rounds` rounds;
2. function calls: Python function calls per model call on the agent's thread, counted with
   cProfile. The count does not depend on machine load, so it backs the CPU-time ratios on a
   shared machine, but it leaves out background threads and calls into C;
3. sustained load: `--threads` threads invoke the graph for `--sustained-calls` model calls
   as fast as they can. Then the store or exporter is flushed and the captured model calls
   are counted: records in the store, LLM spans for the span-based peers.

Run: `python bench/capture_overhead.py` (about 25 minutes on a 2-core machine shared with
other jobs); `--quick` for a smoke run, `--measurements calls` for the call count alone.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

REPO_ROOT = Path(__file__).resolve().parent.parent
CALLS_PER_INVOCATION = 3
SYSTEM_PROMPT = (
    "You are the support assistant of an online shop. Classify the customer's message, "
    "plan the reply and answer in the customer's language. Never promise refunds. " * 3
)
USER_MESSAGE = "Hallo! Meine Bestellung 4711 ist noch nicht angekommen – können Sie nachsehen? 📦"
CONFIG_ORDER = (
    "none",
    "noop",
    "slmshift-memory",
    "slmshift-sqlite",
    "slmshift-spans",
    "slmshift-spans-queue",
    "openinference",
    "openllmetry",
)
PEERS = ("openinference", "openllmetry")


# -- the graph under test --------------------------------------------------------------------


class State(TypedDict):
    messages: Annotated[list, operator.add]


def build_graph() -> Any:
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langgraph.graph import END, START, StateGraph

    answer = AIMessage(
        content="Ihre Bestellung ist unterwegs und kommt morgen an.",
        usage_metadata={"input_tokens": 120, "output_tokens": 14, "total_tokens": 134},
    )
    model = FakeMessagesListChatModel(responses=[answer])

    def make_node(name: str) -> Callable[[State], dict]:
        def node(state: State) -> dict:
            prompt = [SystemMessage(SYSTEM_PROMPT), HumanMessage(f"{name}: {USER_MESSAGE}")]
            return {"messages": [model.invoke(prompt)]}

        return node

    builder = StateGraph(State)
    for name in ("classify", "plan", "answer"):
        builder.add_node(name, make_node(name))
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "plan")
    builder.add_edge("plan", "answer")
    builder.add_edge("answer", END)
    return builder.compile()


# -- configurations (run inside the child process) -------------------------------------------


@dataclass
class Setup:
    """Callbacks a configuration adds to each invocation, and the counter of what it captured."""

    callbacks: list[Any] = field(default_factory=list)
    count_captured: Callable[[], dict[str, int]] | None = None


class Unavailable(RuntimeError):
    """The configuration cannot run in this checkout (a component has not landed yet)."""


def setup_none() -> Setup:
    return Setup()


def setup_noop() -> Setup:
    from langchain_core.callbacks import BaseCallbackHandler

    class NoOpHandler(BaseCallbackHandler):
        run_inline = True

    return Setup(callbacks=[NoOpHandler()])


def _slmshift_setup(store_url: str, **handler_options: Any) -> Setup:
    from slmshift.callbacks.langchain import LangChainTraceHandler
    from slmshift.store import TraceStore

    store = TraceStore(store_url)
    handler = LangChainTraceHandler(store, agent="bench", **handler_options)

    def count() -> dict[str, int]:
        handler.flush()
        return {"captured": store.count(), "dropped": handler.stats.dropped}

    return Setup(callbacks=[handler], count_captured=count)


def setup_slmshift_memory() -> Setup:
    return _slmshift_setup("memory://")


def setup_slmshift_sqlite() -> Setup:
    try:
        import slmshift.store.sqlite  # noqa: F401
    except ImportError as exc:
        raise Unavailable("slmshift.store.sqlite has not landed in this checkout") from exc
    directory = tempfile.mkdtemp(prefix="slmshift-bench-")
    return _slmshift_setup(f"sqlite:///{directory}/traces.db")


def setup_slmshift_spans(*, queue: bool = False) -> Setup:
    # The "with spans" configuration: the handler emitting OTel spans next to its records.
    try:
        from slmshift.integrations.opentelemetry import SpanListener  # noqa: F401
    except ImportError as exc:
        raise Unavailable(
            "slmshift.integrations.opentelemetry.SpanListener has not landed"
        ) from exc
    provider, exporter = _otel_provider(queue=queue)
    setup = _slmshift_setup("memory://", tracer_provider=provider)
    count_records = setup.count_captured

    def count() -> dict[str, int]:
        counts = count_records()  # type: ignore[misc]
        provider.force_flush()
        spans = exporter.get_finished_spans()
        counts["spans"] = len(spans)
        counts["llm_spans"] = sum(1 for span in spans if span.attributes.get("gen_ai.operation.name") == "chat")
        return counts

    setup.count_captured = count
    return setup


def setup_slmshift_spans_queue() -> Setup:
    return setup_slmshift_spans(queue=True)


def _otel_provider(*, queue: bool = False) -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    if queue:
        from slmshift.integrations.opentelemetry import QueueSpanProcessor

        provider.add_span_processor(QueueSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


def _span_counter(
    provider: Any, exporter: Any, is_llm_span: Callable[[Any], bool]
) -> Callable[[], dict[str, int]]:
    def count() -> dict[str, int]:
        provider.force_flush()
        spans = exporter.get_finished_spans()
        return {"captured": sum(1 for span in spans if is_llm_span(span)), "spans": len(spans)}

    return count


def setup_openinference() -> Setup:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    provider, exporter = _otel_provider()
    LangChainInstrumentor().instrument(tracer_provider=provider)

    def is_llm(span: Any) -> bool:
        return span.attributes.get("openinference.span.kind") == "LLM"

    return Setup(count_captured=_span_counter(provider, exporter, is_llm))


def setup_openllmetry() -> Setup:
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    provider, exporter = _otel_provider()
    LangchainInstrumentor().instrument(tracer_provider=provider)

    def is_llm(span: Any) -> bool:
        return span.attributes.get("llm.request.type") == "chat" or span.name.endswith(".chat")

    return Setup(count_captured=_span_counter(provider, exporter, is_llm))


SETUPS: dict[str, Callable[[], Setup]] = {
    "none": setup_none,
    "noop": setup_noop,
    "slmshift-memory": setup_slmshift_memory,
    "slmshift-sqlite": setup_slmshift_sqlite,
    "slmshift-spans": setup_slmshift_spans,
    "slmshift-spans-queue": setup_slmshift_spans_queue,
    "openinference": setup_openinference,
    "openllmetry": setup_openllmetry,
}


# -- child process ----------------------------------------------------------------------------


def run_overhead(setup: Setup, invocations: int, batches: int) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    graph = build_graph()
    config = {"callbacks": setup.callbacks}
    inputs = {"messages": [HumanMessage(USER_MESSAGE)]}
    for _ in range(max(20, invocations // 10)):
        graph.invoke(inputs, config)

    cpu_us, wall_us = [], []
    calls = invocations * CALLS_PER_INVOCATION
    for _ in range(batches):
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(invocations):
            graph.invoke(inputs, config)
        # Process CPU time includes background threads (store writer, span processor), so
        # work moved off the agent's thread still counts.
        cpu_us.append((time.process_time() - cpu_started) / calls * 1e6)
        wall_us.append((time.perf_counter() - wall_started) / calls * 1e6)
    if setup.count_captured is not None:
        setup.count_captured()
    return {"us_per_call": cpu_us, "wall_us_per_call": wall_us}


def run_sustained(setup: Setup, calls: int, threads: int) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    graph = build_graph()
    config = {"callbacks": setup.callbacks}
    invocations_per_thread = calls // (threads * CALLS_PER_INVOCATION)

    def work(index: int) -> None:
        inputs = {"messages": [HumanMessage(f"{USER_MESSAGE} #{index}")]}
        for _ in range(invocations_per_thread):
            graph.invoke(inputs, config)

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    made = invocations_per_thread * threads * CALLS_PER_INVOCATION
    counts = setup.count_captured() if setup.count_captured is not None else {}
    return {"calls": made, "calls_per_s": made / elapsed, **counts}


def run_call_count(setup: Setup, invocations: int) -> dict[str, Any]:
    import cProfile
    import pstats

    from langchain_core.messages import HumanMessage

    graph = build_graph()
    config = {"callbacks": setup.callbacks}
    inputs = {"messages": [HumanMessage(USER_MESSAGE)]}
    for _ in range(20):
        graph.invoke(inputs, config)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(invocations):
        graph.invoke(inputs, config)
    profile.disable()
    total_calls = pstats.Stats(profile).total_calls
    return {"function_calls_per_call": total_calls / (invocations * CALLS_PER_INVOCATION)}


def child_main(args: argparse.Namespace) -> None:
    try:
        setup = SETUPS[args.child]()
    except Unavailable as exc:
        print(json.dumps({"unavailable": str(exc)}))
        return
    if args.mode == "overhead":
        result = run_overhead(setup, args.invocations, args.batches)
    elif args.mode == "calls":
        result = run_call_count(setup, 100)
    else:
        result = run_sustained(setup, args.sustained_calls, args.threads)
    print(json.dumps(result))


# -- parent process ---------------------------------------------------------------------------


def run_child(config: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        config,
        "--mode",
        mode,
        "--invocations",
        str(args.invocations),
        "--batches",
        str(args.batches),
        "--sustained-calls",
        str(args.sustained_calls),
        "--threads",
        str(args.threads),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"configuration {config} ({mode}) failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_overhead(args: argparse.Namespace) -> dict[str, list[float] | str]:
    samples: dict[str, list[float] | str] = {}
    for round_number in range(args.rounds):
        for config in args.configs:
            if isinstance(samples.get(config), str):
                continue
            result = run_child(config, "overhead", args)
            if "unavailable" in result:
                samples[config] = result["unavailable"]
                continue
            samples.setdefault(config, []).extend(result["us_per_call"])  # type: ignore[union-attr]
            print(
                f"  round {round_number + 1}: {config:16s} "
                f"{statistics.median(result['us_per_call']):8.1f} µs/call",
                file=sys.stderr,
            )
    return samples


def overhead_table(samples: dict[str, list[float] | str]) -> str:
    """Format medians and minimums of CPU time per model call.

    On a shared machine, noise only adds CPU time, so the minimum of the batches is the
    steadier estimate of the intrinsic cost.
    """
    measured = {name: values for name, values in samples.items() if not isinstance(values, str)}
    medians = {name: statistics.median(values) for name, values in measured.items()}
    minimums = {name: min(values) for name, values in measured.items()}
    ours_median = medians.get("slmshift-memory", float("nan")) - medians["none"]
    ours_min = minimums.get("slmshift-memory", float("nan")) - minimums["none"]
    lines = [
        "| configuration | CPU µs/call, median | overhead, median | × ours, median "
        "| CPU µs/call, min | overhead, min | × ours, min |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in samples:
        if name not in measured:
            lines.append(f"| {name} | n/a: {samples[name]} | | | | | |")
            continue
        overhead_median = medians[name] - medians["none"]
        overhead_min = minimums[name] - minimums["none"]
        lines.append(
            f"| {name} | {medians[name]:.1f} | {overhead_median:.1f} "
            f"| {_ratio(name, overhead_median, ours_median)} | {minimums[name]:.1f} "
            f"| {overhead_min:.1f} | {_ratio(name, overhead_min, ours_min)} |"
        )
    return "\n".join(lines)


def peer_table(samples: dict[str, list[float] | str]) -> str:
    """Format span emission against the cheaper of the two peers, on medians and minimums."""
    measured = {name: values for name, values in samples.items() if not isinstance(values, str)}
    if not all(name in measured for name in ("none", "slmshift-memory", *PEERS)):
        return ""
    lines = [
        "| configuration | overhead / cheaper peer's, median | overhead / cheaper peer's, min |",
        "|---|---:|---:|",
    ]
    statistics_by_kind = {"median": statistics.median, "min": min}
    cheaper = {
        kind: min(pick(measured[peer]) - pick(measured["none"]) for peer in PEERS)
        for kind, pick in statistics_by_kind.items()
    }
    rows = [name for name in ("slmshift-memory", "slmshift-spans", "slmshift-spans-queue") if name in measured]
    for name in rows:
        cells = []
        for kind, pick in statistics_by_kind.items():
            overhead = pick(measured[name]) - pick(measured["none"])
            cells.append(f"{overhead / cheaper[kind]:.2f}" if cheaper[kind] > 0 else "–")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    if "slmshift-spans" in measured:
        cells = []
        for kind, pick in statistics_by_kind.items():
            increment = pick(measured["slmshift-spans"]) - pick(measured["slmshift-memory"])
            cells.append(f"{increment / cheaper[kind]:.2f}" if cheaper[kind] > 0 else "–")
        lines.append(f"| span emission alone (spans minus memory) | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _ratio(name: str, overhead: float, ours: float) -> str:
    if name == "none" or not ours > 0:
        return "–"
    return f"{overhead / ours:.1f}×"


def sustained_table(args: argparse.Namespace) -> str:
    lines = [
        f"| configuration | model calls | calls/s ({args.threads} threads) | captured | lost | model-call spans lost |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for config in args.configs:
        if config in ("none", "noop"):
            continue
        result = run_child(config, "sustained", args)
        if "unavailable" in result:
            lines.append(f"| {config} | n/a ({result['unavailable']}) | | | | |")
            continue
        lost = result["calls"] - result["captured"]
        if "llm_spans" in result:
            spans_lost = str(result["calls"] - result["llm_spans"])
        elif config in PEERS:
            spans_lost = str(lost)
        else:
            spans_lost = "–"
        lines.append(
            f"| {config} | {result['calls']} | {result['calls_per_s']:.0f} | {result['captured']} | {lost} | {spans_lost} |"
        )
        print(f"  sustained: {config:16s} {result}", file=sys.stderr)
    return "\n".join(lines)


def call_count_table(args: argparse.Namespace) -> str:
    counts: dict[str, float | str] = {}
    for config in args.configs:
        result = run_child(config, "calls", args)
        counts[config] = result.get("unavailable") or result["function_calls_per_call"]
    baseline = counts["none"]
    ours = counts.get("slmshift-memory")
    lines = [
        "| configuration | Python calls per model call | added calls | × ours |",
        "|---|---:|---:|---:|",
    ]
    for name, value in counts.items():
        if isinstance(value, str):
            lines.append(f"| {name} | n/a: {value} | | |")
            continue
        added = value - baseline  # type: ignore[operator]
        ours_added = ours - baseline if isinstance(ours, float) else float("nan")  # type: ignore[operator]
        lines.append(f"| {name} | {value:.0f} | {added:.0f} | {_ratio(name, added, ours_added)} |")
    return "\n".join(lines)


def machine_line() -> str:
    cores = os.cpu_count()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = platform.python_version()
    return f"{platform.machine()}, {cores} cores, {memory_gib:.0f} GiB, Python {python}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(SETUPS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode",
        choices=("overhead", "sustained", "calls"),
        default="overhead",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIG_ORDER,
        default=list(CONFIG_ORDER),
        help="configurations to run",
    )
    parser.add_argument(
        "--invocations", type=int, default=300, help="graph invocations per timed batch"
    )
    parser.add_argument("--batches", type=int, default=5, help="timed batches per subprocess")
    parser.add_argument(
        "--rounds", type=int, default=4, help="times each configuration is run, interleaved"
    )
    parser.add_argument(
        "--sustained-calls", type=int, default=15_000, help="model calls in the sustained-load run"
    )
    parser.add_argument("--threads", type=int, default=4, help="threads in the sustained-load run")
    parser.add_argument(
        "--measurements",
        nargs="+",
        choices=("overhead", "calls", "sustained"),
        default=["overhead", "calls", "sustained"],
        help="measurements to run",
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.invocations, args.batches, args.rounds, args.sustained_calls = 30, 2, 1, 600
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    if "none" not in args.configs:
        args.configs = ["none", *args.configs]
    print(f"machine: {machine_line()}")
    print(f"command: python bench/capture_overhead.py {' '.join(sys.argv[1:])}".rstrip())
    if "overhead" in args.measurements:
        print("\nPer-model-call CPU time (3-node graph, one fake model call per node):\n")
        samples = measure_overhead(args)
        print(overhead_table(samples))
        comparison = peer_table(samples)
        if comparison:
            print("\nOverhead relative to the cheaper of OpenInference and OpenLLMetry:\n")
            print(comparison)
    if "calls" in args.measurements:
        print("\nPython function calls per model call on the agent's thread (cProfile):\n")
        print(call_count_table(args))
    if "sustained" in args.measurements:
        print(
            f"\nSustained load ({args.sustained_calls} model calls, {args.threads} threads, "
            "as fast as possible):\n"
        )
        print(sustained_table(args))


if __name__ == "__main__":
    main()
