"""Clustering of a node's calls into recurring tasks, with cost and SLM suitability per task."""

from slmshift.clustering.cluster import ClusterConfig, cluster_records, cluster_vectors
from slmshift.clustering.pricing import Price, PriceTable
from slmshift.clustering.tasks import Task, TaskAnalysis, records_for_task, score_suitability

__all__ = [
    "ClusterConfig",
    "Price",
    "PriceTable",
    "Task",
    "TaskAnalysis",
    "cluster_records",
    "cluster_vectors",
    "records_for_task",
    "score_suitability",
]
