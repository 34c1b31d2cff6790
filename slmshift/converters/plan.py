"""`ConversionPlan`: which nodes move to which SLM, how answers are checked, when to fall back.

A plan file (YAML or JSON) reads:

    version: 1
    agent: support-bot
    nodes:
      - node: classify                 # node path; outer/inner inside subgraphs
        task: classify/0
        base_model: Qwen/Qwen2.5-0.5B-Instruct
        adapter: models/classify       # a directory written by `slmshift train` ...
        # endpoint: http://127.0.0.1:8000/v1   ... or an OpenAI-compatible server (vLLM)
        # adapter_name: classify                  serving this LoRA adapter name
        validation: {labels: [billing, refund, other], min_confidence: 0.6}
        fallback: {mode: fallback}     # fallback | shadow | canary | none
        promotion: {min_agreement: 0.95, min_samples: 200}

`ConversionPlan.model_factories` turns it into what `swap_node_models` applies: for each node,
a function from the node's original model to an `SLMChatModel`, wrapped in a
`FallbackChatModel` whose LLM is that original model unless the mode is `none`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

PLAN_VERSION = 1
FALLBACK_MODES = ("fallback", "shadow", "canary", "none")
VALIDATION_FIELDS = ("labels", "json_schema", "check_tools", "min_confidence")
DEFAULT_CANARY_SHARE = 0.1


class PlanError(ValueError):
    """A conversion plan or plan file is invalid; the message names the value and the fix."""


@dataclass(frozen=True)
class FallbackPolicy:
    """Placement of the SLM in front of the node's original model.

    `mode` is `fallback` (SLM serves, LLM on failed validation), `shadow` (LLM serves, SLM is
    compared), `canary` (the SLM serves `canary_share` of requests) or `none` (SLM alone).
    """

    mode: str = "fallback"
    canary_share: float = DEFAULT_CANARY_SHARE
    seed: int = 0


@dataclass(frozen=True)
class NodePlan:
    """One node's conversion; exactly one of `adapter` and `endpoint` locates the SLM."""

    node: str
    task: str | None = None
    base_model: str | None = None
    adapter: str | None = None
    endpoint: str | None = None
    adapter_name: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    fallback: FallbackPolicy = field(default_factory=FallbackPolicy)
    promotion: dict[str, float] = field(default_factory=dict)
    max_new_tokens: int | None = None
    load_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: value for key, value in data.items() if value not in (None, {}, [])}

    def model_factory(self, *, store: Any = None) -> Callable[[Any], Any]:
        """Return `original_model -> new_model`; the SLM is loaded on first use, then reused."""
        lock = threading.Lock()
        loaded: list[Any] = []

        def slm_model() -> Any:
            with lock:
                if not loaded:
                    loaded.append(self._build_slm())
                return loaded[0]

        def factory(original: Any) -> Any:
            slm = slm_model()
            if self.fallback.mode == "none":
                return slm
            from slmshift.integrations.fallback import FallbackChatModel

            return FallbackChatModel(
                slm,
                original,
                validate=dict(self.validation) or None,
                mode=self.fallback.mode,
                canary_share=self.fallback.canary_share,
                seed=self.fallback.seed,
                store=store,
                node=self.node,
            )

        return factory

    def _build_slm(self) -> Any:
        from slmshift.integrations.langchain import SLMChatModel

        if self.endpoint is not None:
            from slmshift.integrations.openai_compat import OpenAICompatGenerator

            generator = OpenAICompatGenerator(self.endpoint, self.adapter_name or self.node)
        else:
            from slmshift.slm import load_slm

            options = dict(self.load_options)
            if self.base_model is not None:
                options.setdefault("base_model", self.base_model)
            generator = load_slm(str(self.adapter), **options)
        return SLMChatModel(generator=generator, max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class ConversionPlan:
    """The nodes of one agent to convert, in the order they were planned."""

    nodes: tuple[NodePlan, ...]
    agent: str | None = None
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))

    def node(self, path: str) -> NodePlan:
        for entry in self.nodes:
            if entry.node == path:
                return entry
        raise KeyError(f"Node {path!r} is not in the plan; planned nodes: {[entry.node for entry in self.nodes]}.")

    def model_factories(self, *, store: Any = None) -> dict[str, Callable[[Any], Any]]:
        return {entry.node: entry.model_factory(store=store) for entry in self.nodes}

    # -- files --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": self.version}
        if self.agent is not None:
            data["agent"] = self.agent
        data["nodes"] = [entry.to_dict() for entry in self.nodes]
        return data

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON for a `.json` path, else as YAML."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, *, check_files: bool = False) -> ConversionPlan:
        """Read and validate a YAML or JSON plan file.

        Raises:
            PlanError: the file is missing, unreadable or invalid; the message names the entry.
        """
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"Plan file {str(path)!r} not found: write one with `slmshift plan write`.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PlanError(
                f"Plan file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                "save it as UTF-8 YAML or JSON."
            ) from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise PlanError(f"Plan file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
        return cls.from_dict(data, source=str(path), check_files=check_files, base_dir=path.parent)

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        source: str = "plan",
        check_files: bool = False,
        base_dir: Path | None = None,
    ) -> ConversionPlan:
        """Build and validate a plan from parsed YAML or JSON; relative adapter paths resolve from `base_dir`."""
        from slmshift.converters._plan_checks import check_plan

        return check_plan(cls, NodePlan, FallbackPolicy, data, source=source, check_files=check_files, base_dir=base_dir)
