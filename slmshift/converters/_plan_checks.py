"""Validation of parsed plan files: one block per rule, each error naming the value and the fix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from slmshift.converters.plan import (
    FALLBACK_MODES,
    PLAN_VERSION,
    VALIDATION_FIELDS,
    PlanError,
)

logger = logging.getLogger(__name__)

NODE_FIELDS = (
    "node", "task", "base_model", "adapter", "endpoint", "adapter_name",
    "validation", "fallback", "promotion", "max_new_tokens", "load_options",
)
FALLBACK_FIELDS = ("mode", "canary_share", "seed")


def check_plan(
    plan_cls: type,
    node_cls: type,
    policy_cls: type,
    data: Any,
    *,
    source: str,
    check_files: bool,
    base_dir: Path | None,
) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"{source}: a plan must be a mapping with a `nodes` list, got {type(data).__name__}.")
    unknown = sorted(set(data) - {"version", "agent", "nodes"})
    if unknown:
        raise PlanError(f"{source}: unknown plan fields {unknown}; allowed: version, agent, nodes.")
    version = data.get("version", PLAN_VERSION)
    if version != PLAN_VERSION:
        raise PlanError(f"{source}: plan version {version!r} is not supported; this slmshift reads {PLAN_VERSION}.")
    entries = data.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise PlanError(f"{source}: `nodes` must be a non-empty list of node entries.")

    nodes = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}: nodes[{index}]"
        node = _check_node(node_cls, policy_cls, entry, where=where, check_files=check_files, base_dir=base_dir)
        if node.node in seen:
            raise PlanError(f"{where}: node {node.node!r} is planned twice; keep one entry per node.")
        seen.add(node.node)
        nodes.append(node)
    return plan_cls(nodes=tuple(nodes), agent=data.get("agent"), version=version)


def _check_node(
    node_cls: type, policy_cls: type, entry: Any, *, where: str, check_files: bool, base_dir: Path | None
) -> Any:
    if not isinstance(entry, dict):
        raise PlanError(f"{where}: a node entry must be a mapping, got {entry!r:.80}.")
    unknown = sorted(set(entry) - set(NODE_FIELDS))
    if unknown:
        raise PlanError(f"{where}: unknown fields {unknown}; allowed: {', '.join(NODE_FIELDS)}.")
    node = entry.get("node")
    if not isinstance(node, str) or not node.strip() or node.startswith("/") or node.endswith("/"):
        raise PlanError(f"{where}: `node` must be a node name or an outer/inner path, got {node!r}.")
    where = f"{where} ({node})"

    adapter, endpoint = entry.get("adapter"), entry.get("endpoint")
    if (adapter is None) == (endpoint is None):
        raise PlanError(
            f"{where}: set exactly one of `adapter` (a model directory) and `endpoint` "
            f"(an OpenAI-compatible URL); got adapter={adapter!r}, endpoint={endpoint!r}."
        )
    if adapter is not None:
        adapter = _check_adapter(adapter, where=where, check_files=check_files, base_dir=base_dir)
    if endpoint is not None:
        _check_endpoint(endpoint, entry.get("adapter_name"), where=where)

    fields = dict(entry)
    fields["adapter"] = adapter
    fields["validation"] = _check_validation(entry.get("validation") or {}, where=where)
    fields["fallback"] = _check_fallback(policy_cls, entry.get("fallback") or {}, where=where)
    fields["promotion"] = _check_promotion(entry.get("promotion") or {}, where=where)
    max_new_tokens = entry.get("max_new_tokens")
    if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise PlanError(f"{where}: max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
    if not isinstance(fields.get("load_options") or {}, dict):
        raise PlanError(f"{where}: load_options must be a mapping of load_slm options.")
    fields["load_options"] = dict(fields.get("load_options") or {})
    return node_cls(**fields)


def _check_adapter(adapter: Any, *, where: str, check_files: bool, base_dir: Path | None) -> str:
    if not isinstance(adapter, str) or not adapter:
        raise PlanError(f"{where}: adapter must be a directory path, got {adapter!r}.")
    path = Path(adapter)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if check_files and not (path / "manifest.json").is_file():
        raise PlanError(
            f"{where}: adapter {str(path)!r} has no manifest.json: pass a model directory written by "
            "`slmshift train`."
        )
    return str(path)


def _check_endpoint(endpoint: Any, adapter_name: Any, *, where: str) -> None:
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise PlanError(f"{where}: endpoint must be an http(s) URL such as http://127.0.0.1:8000/v1, got {endpoint!r}.")
    if not isinstance(adapter_name, str) or not adapter_name:
        raise PlanError(
            f"{where}: an endpoint needs `adapter_name`, the LoRA adapter name the server serves "
            "(vLLM: the name given to --lora-modules)."
        )


def _check_validation(validation: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(validation, dict):
        raise PlanError(f"{where}: validation must be a mapping, got {validation!r:.80}.")
    unknown = sorted(set(validation) - set(VALIDATION_FIELDS))
    if unknown:
        raise PlanError(f"{where}: unknown validation fields {unknown}; allowed: {', '.join(VALIDATION_FIELDS)}.")
    labels = validation.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels)):
        raise PlanError(f"{where}: validation.labels must be a non-empty list of strings, got {labels!r:.80}.")
    min_confidence = validation.get("min_confidence")
    if min_confidence is not None and (
        isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) or not 0 <= min_confidence <= 1
    ):
        raise PlanError(f"{where}: validation.min_confidence must be between 0 and 1, got {min_confidence!r}.")
    schema = validation.get("json_schema")
    if schema is not None:
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except (jsonschema.SchemaError, TypeError, AttributeError) as exc:
            raise PlanError(f"{where}: validation.json_schema is not a valid JSON schema: {exc}") from exc
    return dict(validation)


def _check_fallback(policy_cls: type, fallback: Any, *, where: str) -> Any:
    if not isinstance(fallback, dict):
        raise PlanError(f"{where}: fallback must be a mapping such as {{mode: fallback}}, got {fallback!r:.80}.")
    unknown = sorted(set(fallback) - set(FALLBACK_FIELDS))
    if unknown:
        raise PlanError(f"{where}: unknown fallback fields {unknown}; allowed: {', '.join(FALLBACK_FIELDS)}.")
    mode = fallback.get("mode", "fallback")
    if mode not in FALLBACK_MODES:
        raise PlanError(f"{where}: fallback.mode {mode!r} is invalid; use one of {', '.join(FALLBACK_MODES)}.")
    share = fallback.get("canary_share", 0.1)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise PlanError(f"{where}: fallback.canary_share must be a share between 0 and 1, got {share!r}.")
    seed = fallback.get("seed", 0)
    if not isinstance(seed, int):
        raise PlanError(f"{where}: fallback.seed must be an integer, got {seed!r}.")
    return policy_cls(mode=mode, canary_share=float(share), seed=seed)


def _check_promotion(promotion: Any, *, where: str) -> dict[str, float]:
    if not isinstance(promotion, dict):
        raise PlanError(f"{where}: promotion must map metric names to thresholds, got {promotion!r:.80}.")
    for name, threshold in promotion.items():
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise PlanError(f"{where}: promotion threshold {name!r} must be a number, got {threshold!r}.")
    return dict(promotion)
