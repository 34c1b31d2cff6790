"""Grouping of a node's calls into tasks.

Within each node, calls are first split by output kind. Label calls form one task per node
(a classifier with one label set, however varied its inputs), and JSON calls one task per key
set. Tool-call and free-text calls are clustered on what varies in their input: the node's
template is stripped, the rest embedded, reduced with PCA and clustered with scikit-learn's
HDBSCAN, whose noise class becomes the `<node>/noise` task. For tool calls, the names of the
offered tools are part of the embedded text, so tasks follow function families.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from slmshift.clustering.embeddings import Embedder, default_embedder
from slmshift.clustering.naming import distinctive_terms
from slmshift.clustering.pricing import PriceTable
from slmshift.clustering.tasks import Task, TaskAnalysis, score_suitability
from slmshift.clustering.templates import Template, find_template
from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

NOISE = -1
# Texts embedded per task for its place on the task map.
MAP_SAMPLE = 30
CHARS_PER_TOKEN = 4
MAX_LABEL_CHARS = 64

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of task clustering.

    Attributes:
        min_cluster_size: Smallest group of calls HDBSCAN calls a task; `None` picks 1% of the
            points fitted, at least 4.
        max_fit_points: At most this many calls of a group are embedded and clustered; the
            others join the nearest task centroid in TF-IDF space.
        dimensions: PCA dimensions the embeddings are reduced to before HDBSCAN.
        max_labels: A label set larger than this is clustered like free text.
        seed: Seed for sampling, PCA and SVD.
    """

    min_cluster_size: int | None = None
    max_fit_points: int = 2000
    dimensions: int = 10
    max_labels: int = 500
    seed: int = 0


@dataclass
class _Group:
    """Calls of one node that become one task, or the noise class."""

    node: str
    kind: str
    indexes: list[int]
    is_noise: bool = False


def cluster_records(
    records: Sequence[CallRecord],
    *,
    embedder: Embedder | None = None,
    config: ClusterConfig | None = None,
    prices: PriceTable | None = None,
    progress: Progress | None = None,
) -> TaskAnalysis:
    """Group `records` into tasks per node and profile each task.

    Records without a response are skipped; curate first to drop them with a count.
    """
    config = config or ClusterConfig()
    prices = prices or PriceTable.defaults()
    records = [record for record in records if record.response is not None]
    embedder = embedder or default_embedder()
    cache = _EmbeddingCache(embedder)

    by_node: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_node[record.node or "(no node)"].append(index)

    templates = {node: find_template([records[index] for index in indexes]) for node, indexes in by_node.items()}
    if hasattr(embedder, "fit"):
        embedder.fit([cluster_text(record, templates[record.node or "(no node)"]) for record in records])

    tasks: list[Task] = []
    texts_by_task: dict[str, list[str]] = {}
    for step, (node, indexes) in enumerate(sorted(by_node.items()), start=1):
        if progress:
            progress(f"clustering node {node}", step - 1, len(by_node))
        template = templates[node]
        texts = {index: cluster_text(records[index], template) for index in indexes}
        groups = _groups_for_node(node, indexes, records, texts, cache, config)
        node_tasks = _build_tasks(node, groups, records, texts, template, prices)
        tasks.extend(node_tasks)
        for task, group in zip(node_tasks, groups):
            texts_by_task[task.id] = [texts[index] for index in group.indexes]
    if progress:
        progress("placing tasks on the map", len(by_node), len(by_node))

    _place_on_map(tasks, texts_by_task, cache, config.seed)
    return TaskAnalysis(
        tasks=tasks,
        embedder=embedder.name,
        records_analyzed=len(records),
        window_days=_window_days(records),
        settings={"min_cluster_size": config.min_cluster_size, "dimensions": config.dimensions,
                  "max_fit_points": config.max_fit_points},
    )


def cluster_text(record: CallRecord, template: Template) -> str:
    """Return the text a record is clustered on: its varying input and, for tool calls, tool names."""
    text = template.varying_text(record)
    if record.tools:
        names = " ".join(re.sub(r"[_.]", " ", tool.name) for tool in record.tools)
        text = f"{text}\ntools: {names}"
    return text


class _EmbeddingCache:
    """Embeds each distinct text once."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            for text, vector in zip(missing, self.embedder.embed(missing)):
                self._vectors[text] = vector
        return np.stack([self._vectors[text] for text in texts])


def _groups_for_node(
    node: str,
    indexes: list[int],
    records: Sequence[CallRecord],
    texts: dict[int, str],
    cache: _EmbeddingCache,
    config: ClusterConfig,
) -> list[_Group]:
    by_kind: dict[str, list[int]] = defaultdict(list)
    for index in indexes:
        by_kind[records[index].output_kind or "text"].append(index)

    groups: list[_Group] = []
    labels = by_kind.pop("label", [])
    if labels:
        # A label with punctuation (BANKING77 has "reverted_card_payment?") reads as text.
        texts_kind = by_kind.get("text", [])
        by_kind["text"] = [index for index in texts_kind if not _is_token(records[index])]
        labels += [index for index in texts_kind if _is_token(records[index])]
        distinct = {records[index].response.text.strip() for index in labels}
        if len(distinct) <= config.max_labels:
            groups.append(_Group(node, "label", labels))
        else:
            by_kind.setdefault("text", []).extend(labels)

    for signature_indexes in _json_groups(by_kind.pop("json", []), records).values():
        groups.append(_Group(node, "json", signature_indexes))

    for kind in ("tool_call", "text"):
        if by_kind.get(kind):
            groups.extend(_density_groups(node, kind, by_kind[kind], texts, cache, config))
    return groups


def _is_token(record: CallRecord) -> bool:
    text = record.response.text.strip()
    return 0 < len(text) <= MAX_LABEL_CHARS and not any(character.isspace() for character in text)


def _json_groups(indexes: list[int], records: Sequence[CallRecord]) -> dict[tuple[str, ...], list[int]]:
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index in indexes:
        value = json.loads(records[index].response.text)
        keys = tuple(sorted(value)) if isinstance(value, dict) else ("[array]",)
        groups[keys].append(index)
    return groups


def _density_groups(
    node: str,
    kind: str,
    indexes: list[int],
    texts: dict[int, str],
    cache: _EmbeddingCache,
    config: ClusterConfig,
) -> list[_Group]:
    if len(indexes) < 10:
        return [_Group(node, kind, indexes)]
    labels = _cluster_texts([texts[index] for index in indexes], cache, config)

    members: dict[int, list[int]] = defaultdict(list)
    for index, label in zip(indexes, labels):
        members[int(label)].append(index)
    ordered = sorted((label for label in members if label != NOISE), key=lambda label: -len(members[label]))
    groups = [_Group(node, kind, members[label]) for label in ordered]
    if NOISE in members:
        groups.append(_Group(node, kind, members[NOISE], is_noise=True))
    return groups


def _cluster_texts(texts: list[str], cache: _EmbeddingCache, config: ClusterConfig) -> np.ndarray:
    """Cluster `texts`; above `max_fit_points`, a sample is embedded and clustered, and the
    rest join the nearest task centroid in TF-IDF space, so embedding cost stays bounded."""
    if len(texts) <= config.max_fit_points:
        return cluster_vectors(cache.embed(texts), config)

    generator = np.random.default_rng(config.seed)
    sample = np.sort(generator.choice(len(texts), config.max_fit_points, replace=False))
    sample_texts = [texts[row] for row in sample]
    sample_labels = cluster_vectors(cache.embed(sample_texts), config)

    labels = assign_to_centroids(sample_texts, sample_labels, texts)
    labels[sample] = sample_labels
    return labels


def assign_to_centroids(
    fitted_texts: Sequence[str], fitted_labels: np.ndarray, texts: Sequence[str], *, min_similarity: float = 0.2
) -> np.ndarray:
    """Label `texts` by the most similar cluster centroid of the fitted texts, in TF-IDF space.

    A text less similar than `min_similarity` (cosine) to every centroid is noise.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    clusters = sorted(set(int(label) for label in fitted_labels) - {NOISE})
    if not clusters:
        return np.full(len(texts), NOISE)
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    fitted = vectorizer.fit_transform(fitted_texts)
    centroids = normalize(np.vstack([np.asarray(fitted[fitted_labels == label].mean(axis=0)) for label in clusters]))
    similarity = vectorizer.transform(texts) @ centroids.T
    best = np.asarray(similarity.argmax(axis=1)).ravel()
    scores = np.asarray(similarity.max(axis=1)).ravel()
    labels = np.array(clusters)[best]
    labels[scores < min_similarity] = NOISE
    return labels


def cluster_vectors(vectors: np.ndarray, config: ClusterConfig | None = None) -> np.ndarray:
    """Cluster rows of `vectors` with PCA and HDBSCAN; return a label per row, -1 for noise."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    config = config or ClusterConfig()
    dimensions = min(config.dimensions, vectors.shape[1], len(vectors) - 1)
    reduced = PCA(n_components=dimensions, random_state=config.seed).fit_transform(vectors)

    generator = np.random.default_rng(config.seed)
    fit_rows = np.arange(len(reduced))
    if len(reduced) > config.max_fit_points:
        fit_rows = np.sort(generator.choice(len(reduced), config.max_fit_points, replace=False))
    min_cluster_size = config.min_cluster_size or max(4, round(0.01 * len(fit_rows)))
    fitted = HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=max(2, min_cluster_size // 2),
        cluster_selection_method="eom",
        allow_single_cluster=True,
        # Excess of mass sometimes selects one cluster holding most points; capping the
        # size makes it pick the clusters inside it.
        max_cluster_size=max(10 * min_cluster_size, len(fit_rows) // 8),
        copy=True,
    ).fit_predict(reduced[fit_rows])

    if len(fit_rows) == len(reduced):
        return fitted
    neighbours = NearestNeighbors(n_neighbors=1).fit(reduced[fit_rows])
    nearest = neighbours.kneighbors(reduced, return_distance=False)[:, 0]
    labels = fitted[nearest]
    labels[fit_rows] = fitted
    return labels


def _build_tasks(
    node: str,
    groups: list[_Group],
    records: Sequence[CallRecord],
    texts: dict[int, str],
    template: Template,
    prices: PriceTable,
) -> list[Task]:
    names = distinctive_terms([[texts[index] for index in group.indexes] for group in groups])
    tasks = []
    number = 0
    for group, terms in zip(groups, names):
        task_id = f"{node}/noise" if group.is_noise else f"{node}/{number}"
        number += 0 if group.is_noise else 1
        task = _profile(task_id, node, group, [records[index] for index in group.indexes], terms, template, prices)
        task.suitability, task.reasons = score_suitability(task)
        tasks.append(task)
    return tasks


def _profile(
    task_id: str,
    node: str,
    group: _Group,
    members: list[CallRecord],
    terms: list[str],
    template: Template,
    prices: PriceTable,
) -> Task:
    input_tokens = output_tokens = 0
    cost = slm_cost = 0.0
    for record in members:
        tokens_in, tokens_out = _tokens(record)
        input_tokens += tokens_in
        output_tokens += tokens_out
        cost += prices.price(record.model).cost(tokens_in, tokens_out)
        slm_cost += prices.slm.cost(tokens_in, tokens_out)

    diversity = _output_diversity(group.kind, members)
    name = _task_name(group, terms, diversity)
    return Task(
        id=task_id,
        node=node,
        name=name,
        terms=terms,
        output_kind=group.kind,
        record_ids=[record.id for record in members],
        call_count=len(members),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=round(cost, 6),
        slm_cost_usd=round(slm_cost, 6),
        models=dict(Counter(record.model or "unknown" for record in members)),
        output_diversity=diversity,
        template_share=round(float(np.mean([template.template_share(record) for record in members])), 3),
        is_noise=group.is_noise,
    )


def _task_name(group: _Group, terms: list[str], diversity: dict) -> str:
    if group.is_noise:
        return "unclustered calls"
    if group.kind == "label":
        return f"classify into {len(diversity['labels'])} labels"
    if group.kind == "json":
        return "JSON with keys " + ", ".join(diversity["json_keys"][:4])
    return " / ".join(terms[:3]) or group.kind


def _output_diversity(kind: str, members: list[CallRecord]) -> dict:
    outputs = [record.response for record in members]
    distinct = len({(o.text.strip(), tuple((c.name, json.dumps(c.arguments, sort_keys=True, default=str)) for c in o.tool_calls)) for o in outputs})
    diversity: dict = {"distinct_outputs": distinct, "distinct_share": round(distinct / max(1, len(members)), 3)}
    if kind == "label":
        diversity["labels"] = sorted({o.text.strip() for o in outputs})
    elif kind == "tool_call":
        diversity["tool_names"] = sorted({call.name for o in outputs for call in o.tool_calls})
    elif kind == "json":
        key_sets = {tuple(sorted(json.loads(o.text))) if o.text.strip().startswith("{") else () for o in outputs}
        diversity["json_key_sets"] = len(key_sets)
        diversity["json_keys"] = sorted({key for keys in key_sets for key in keys})
    return diversity


def _tokens(record: CallRecord) -> tuple[int, int]:
    """Return the record's token counts; a count the provider did not send is estimated."""
    usage = record.usage
    tokens_in = usage.input_tokens
    if tokens_in is None:
        tokens_in = sum(len(message.text) for message in record.messages) // CHARS_PER_TOKEN
    tokens_out = usage.output_tokens
    if tokens_out is None:
        response = record.response
        tokens_out = (len(response.text) + sum(len(json.dumps(c.arguments, default=str)) for c in response.tool_calls)) // CHARS_PER_TOKEN
    return tokens_in, tokens_out


def _place_on_map(tasks: list[Task], texts_by_task: dict[str, list[str]], cache: _EmbeddingCache, seed: int) -> None:
    if not tasks:
        return
    generator = np.random.default_rng(seed)
    centroids = []
    for task in tasks:
        texts = texts_by_task[task.id]
        if len(texts) > MAP_SAMPLE:
            texts = [texts[i] for i in generator.choice(len(texts), MAP_SAMPLE, replace=False)]
        centroids.append(cache.embed(texts).mean(axis=0))
    matrix = np.stack(centroids)
    if len(tasks) < 3:
        points = np.zeros((len(tasks), 2))
        points[:, 0] = np.arange(len(tasks))
    else:
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=seed).fit_transform(matrix)
    for task, (x, y) in zip(tasks, points):
        task.map_xy = (round(float(x), 4), round(float(y), 4))


def _window_days(records: Sequence[CallRecord]) -> float | None:
    if not records:
        return None
    times = [record.started_at for record in records]
    return (max(times) - min(times)).total_seconds() / 86400
