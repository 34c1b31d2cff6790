"""Load benchmark of the trace stores: many agent threads in several processes, one shared store.

Each process runs `--threads` agent threads; each thread runs a two-node LangGraph graph
(`classify` then `answer`, both fake chat models from tests/fakes.py, since no hosted model is
reachable here) with `LangChainTraceHandler` attached, so every run stores two records through
the real capture path. All processes share one store: a SQLite file, or a PostgreSQL database
on a throwaway server that the benchmark starts on 127.0.0.1 (or `--postgres-url`).

Reported per backend: records stored versus expected (lost must be 0), records per second
(wall time from the first run to the last record committed), the time `store.add` takes on
the agent's thread (p50, p99), and the run latency with capture versus without it, measured
by the same threads in the same processes just before.

    python bench/store_load.py                         # 10,000 runs, SQLite and PostgreSQL
    python bench/store_load.py --runs 2000 --backends sqlite --encrypt
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench.store_load")

# One run in this many runs without capture, interleaved with the captured runs.
BASELINE_EVERY = 4
AGENT = "load-bench"


def build_graph() -> Any:
    from typing import TypedDict

    from langchain_core.messages import HumanMessage, SystemMessage
    from langgraph.graph import END, START, StateGraph

    from tests.fakes import ScriptedChatModel, text_message

    classifier = ScriptedChatModel(responses=[text_message("shipping", input_tokens=40, output_tokens=1)],
                                   model_name="gpt-4o-mini", provider="openai")
    writer = ScriptedChatModel(
        responses=[text_message("Your order ships tomorrow.", input_tokens=90, output_tokens=8)],
        model_name="gpt-4o", provider="openai",
    )

    class State(TypedDict):
        question: str
        label: str
        answer: str

    def classify(state: State) -> dict[str, str]:
        reply = classifier.invoke([SystemMessage("Label: billing, shipping or other."),
                                   HumanMessage(state["question"])])
        return {"label": reply.content}

    def answer(state: State) -> dict[str, str]:
        reply = writer.invoke([HumanMessage(f"[{state['label']}] {state['question']}")])
        return {"answer": reply.content}

    builder = StateGraph(State)
    builder.add_node("classify", classify)
    builder.add_node("answer", answer)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def run_threads(
    graph: Any, threads: int, runs: int, handler: Any, tag: str
) -> tuple[list[float], list[float]]:
    """Run the graph `runs` times with capture on each of `threads` threads, and every
    `BASELINE_EVERY`-th extra run without it, interleaved so both see the same load.

    Returns the run latencies in seconds: (without capture, with capture).
    """
    baseline: list[float] = []
    captured: list[float] = []
    lock = threading.Lock()
    with_capture = {"callbacks": [handler]}

    def agent(thread_index: int) -> None:
        mine_baseline, mine_captured = [], []
        total = runs + runs // (BASELINE_EVERY - 1)
        for run in range(total):
            is_baseline = run % BASELINE_EVERY == BASELINE_EVERY - 1
            question = f"{tag} {thread_index}/{run}: where is order {run:06d}? I paid with my card."
            started = time.perf_counter()
            graph.invoke({"question": question}, config={} if is_baseline else with_capture)
            elapsed = time.perf_counter() - started
            (mine_baseline if is_baseline else mine_captured).append(elapsed)
        with lock:
            baseline.extend(mine_baseline)
            captured.extend(mine_captured)

    workers = [threading.Thread(target=agent, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return baseline, captured


def add_directly(store: Any, threads: int, records: int, offset: int) -> None:
    """Add `records` realistic records per thread straight to the store, with no agent."""
    from tests.store_records import make_record

    def writer(thread_index: int) -> None:
        first = offset + thread_index * records
        for index in range(first, first + records):
            store.add(make_record(index, agent=AGENT))

    workers = [threading.Thread(target=writer, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def process_main(
    url: str, keys: list[str], threads: int, runs: int, direct: bool, index: int, barrier: Any, results: Any
) -> None:
    from slmshift.callbacks.langchain import LangChainTraceHandler
    from slmshift.store import TraceStore
    from slmshift.store.encryption import StoreKey

    store = TraceStore(url, keys=[StoreKey.from_base64(key) for key in keys])
    add_seconds: list[float] = []
    original_add = store.add

    def timed_add(record: Any) -> bool:
        started = time.perf_counter()
        accepted = original_add(record)
        add_seconds.append(time.perf_counter() - started)
        return accepted

    store.add = timed_add  # the handler calls store.add on the agent's thread
    handler = LangChainTraceHandler(store, agent=AGENT)
    graph = build_graph()

    for run in range(5):  # warm-up: first runs pay for imports and caches
        graph.invoke({"question": f"warm-up {run}"})
    barrier.wait()
    started = time.time()
    if direct:
        # Two records per run, as the agent stores, so both modes write the same count.
        add_directly(store, threads, 2 * runs, offset=index * threads * 2 * runs)
        baseline, captured = [], []
    else:
        baseline, captured = run_threads(graph, threads, runs, handler, "load")
    runs_done = time.time()
    flushed = handler.flush(timeout=300)
    committed = time.time()
    stats = store.stats
    # A memory store lives in this process only, so it is counted here.
    counted = store.count(agent=AGENT) if url.startswith("memory:") else None
    store.close()
    results.put({
        "started": started, "runs_done": runs_done, "committed": committed, "flushed": flushed,
        "baseline": baseline, "captured": captured, "add_seconds": add_seconds, "stats": stats,
        "handler_stats": str(handler.stats), "counted": counted,
    })


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_backend(name: str, url: str, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from slmshift.store import TraceStore
    from slmshift.store.encryption import StoreKey

    runs_per_thread = args.runs // (args.processes * args.threads)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(args.processes), context.Queue()
    processes = [
        context.Process(
            target=process_main,
            args=(url, keys, args.threads, runs_per_thread, args.direct, index, barrier, results),
        )
        for index in range(args.processes)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()

    if url.startswith("memory:"):
        stored = sum(r["counted"] for r in reports)
    else:
        with TraceStore(url, keys=[StoreKey.from_base64(key) for key in keys]) as store:
            stored = store.count(agent=AGENT)
    expected = 2 * runs_per_thread * args.threads * args.processes
    wall = max(r["committed"] for r in reports) - min(r["started"] for r in reports)
    baseline = [value for r in reports for value in r["baseline"]]
    captured = [value for r in reports for value in r["captured"]]
    adds = [value for r in reports for value in r["add_seconds"]]
    return {
        "backend": name,
        "runs": runs_per_thread * args.threads * args.processes,
        "expected": expected,
        "stored": stored,
        "lost": expected - stored,
        "dropped": sum(r["stats"]["dropped"] for r in reports),
        "records_per_s": stored / wall,
        "wall_s": wall,
        "add_p50_us": 1e6 * percentile(adds, 0.5),
        "add_p99_us": 1e6 * percentile(adds, 0.99),
        "run_p50_ms": _run_percentiles(baseline, captured, 0.5),
        "run_p99_ms": _run_percentiles(baseline, captured, 0.99),
        "all_flushed": all(r["flushed"] for r in reports),
    }


def _run_percentiles(baseline: list[float], captured: list[float], share: float) -> tuple[float, float]:
    if not baseline:
        return (float("nan"), float("nan"))
    return (1e3 * percentile(baseline, share), 1e3 * percentile(captured, share))


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| backend | runs | records expected | stored | lost | dropped | records/s | "
          "store.add p50 / p99 (µs) | run p50 without / with capture (ms) | run p99 without / with (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['backend']} | {row['runs']:,} | {row['expected']:,} | {row['stored']:,} | "
            f"{row['lost']} | {row['dropped']} | {row['records_per_s']:,.0f} | "
            f"{row['add_p50_us']:.0f} / {row['add_p99_us']:.0f} | "
            f"{row['run_p50_ms'][0]:.2f} / {row['run_p50_ms'][1]:.2f} | "
            f"{row['run_p99_ms'][0]:.2f} / {row['run_p99_ms'][1]:.2f} |"
        )
    if rows:
        sqlite_rows = [row for row in rows if row["backend"].startswith("sqlite")]
        postgres_rows = [row for row in rows if row["backend"].startswith("postgres")]
        for sqlite_row, postgres_row in zip(sqlite_rows, postgres_rows):
            print(f"\n{postgres_row['backend']} / {sqlite_row['backend']} throughput: "
                  f"{postgres_row['records_per_s'] / sqlite_row['records_per_s']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="agent runs in all (default 10000)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="agent threads per process (default 4)")
    parser.add_argument("--backends", default="memory,sqlite,postgres",
                        help="memory is the control: capture cost without any store I/O")
    parser.add_argument("--encrypt", action="store_true", help="also run each backend encrypted")
    parser.add_argument(
        "--direct", action="store_true",
        help="no agent: threads call store.add with realistic records, to measure the store alone",
    )
    parser.add_argument("--postgres-url", help="use this server instead of starting one on 127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from slmshift.store.encryption import StoreKey

    variants = [[]] + ([[StoreKey.generate().to_base64()]] if args.encrypt else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="slmshift-load-") as folder:
        server = None
        for backend in args.backends.split(","):
            for keys in variants if backend != "memory" else [[]]:
                label = backend + (" (encrypted)" if keys else "")
                if backend == "memory":
                    url = "memory://"
                elif backend == "sqlite":
                    url = str(Path(folder) / f"traces-{len(rows)}.db")
                else:
                    url, server = postgres_database(args, server)
                print(f"running {label}: {args.runs:,} runs, {args.processes} processes x "
                      f"{args.threads} threads ...", file=sys.stderr)
                rows.append(run_backend(label, url, keys, args))
        if server is not None:
            server.stop("fast")
            shutil.rmtree(server.root, ignore_errors=True)
    print_table(rows)
    return 0 if all(row["lost"] == 0 for row in rows) else 1


def postgres_database(args: argparse.Namespace, server: Any) -> tuple[str, Any]:
    """A fresh database: on `--postgres-url`'s server, or on a throwaway local one."""
    import psycopg

    from tests.postgres_server import PostgresServer, find_bin_dir, free_port

    if args.postgres_url:
        name = f"load_{int(time.time() * 1000)}"
        with psycopg.connect(args.postgres_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return args.postgres_url.rsplit("/", 1)[0] + f"/{name}", None
    if server is None:
        import os
        import pwd

        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise SystemExit("PostgreSQL binaries not found: apt-get install -y postgresql, or pass --postgres-url.")
        root = Path(tempfile.mkdtemp(prefix="slmshift-load-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        server = PostgresServer(bin_dir, root, free_port())
        server.initdb()
        server.start()
    return server.url(server.create_database()), server


if __name__ == "__main__":
    sys.exit(main())
