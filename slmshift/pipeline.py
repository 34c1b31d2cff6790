"""The conversion loop on the example support agent, as steps that run in order or alone.

Steps: `capture` (held-out split and traces of the teacher), `analyze` (curate, cluster, report),
`select`, `train`, `evaluate`, `plan` (a `ConversionPlan` and the fixed held-out set) and `serve`
(swap the planned nodes and replay the held-out requests, before and after). Each step reads the
outputs of the steps before it from `<out>/state/` and saves its own there with a cache key, the
SHA-256 of its inputs. A step whose key did not change is skipped, so a second `slmshift demo`
on the same settings and records reuses every model instead of training again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmshift.demo.costs import Prices
from slmshift.pipeline_cache import StepCache, fingerprint, records_fingerprint
from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

STEP_NAMES = ("capture", "analyze", "select", "train", "evaluate", "plan", "serve")
DEMO_AGENT = "support-agent"

# Bumped when the choice of captured and held-out requests changes, so old captures are not reused.
WORKLOAD_VERSION = 2

DEFAULT_REQUESTS = 6000
DEFAULT_HOLDOUT_REQUESTS = 600
FAST_REQUESTS = 1200
FAST_HOLDOUT_REQUESTS = 200


class PipelineError(RuntimeError):
    """A pipeline step cannot run: its inputs are missing or invalid; the message says which."""


@dataclass(frozen=True)
class DemoSettings:
    """Settings of one demo run; every field is part of the cache keys of the steps it affects.

    Attributes:
        requests: Requests captured through the teacher (BANKING77 training split plus BFCL).
        holdout_requests: Held-out requests (BANKING77 test split plus unseen BFCL questions).
        fast: Smaller models and fewer epochs, for tests and quick looks.
        seed: Shuffle seed of the datasets and of training.
        teacher_base_url: An OpenAI-compatible server that replaces the replay teacher.
        teacher_model: Model name sent to `teacher_base_url`.
        hub_model: A hub id or local path of a base model to LoRA-tune; without it, only
            compact and classical models are trained.
        agent: Agent name of the captured records.
        prices: Prices behind the cost estimates.
    """

    requests: int = DEFAULT_REQUESTS
    holdout_requests: int = DEFAULT_HOLDOUT_REQUESTS
    fast: bool = False
    seed: int = 0
    teacher_base_url: str | None = None
    teacher_model: str | None = None
    hub_model: str | None = None
    agent: str = DEMO_AGENT
    prices: Prices = field(default_factory=Prices)

    @property
    def replay_teacher(self) -> bool:
        return self.teacher_base_url is None

    def capture_key(self) -> str:
        return fingerprint(
            "capture", WORKLOAD_VERSION, self.requests, self.holdout_requests, self.seed, self.agent,
            self.teacher_base_url, self.teacher_model,
        )

    def training_options(self) -> dict[str, Any]:
        from slmshift.demo import training

        return {
            "fast": self.fast,
            "seed": self.seed,
            "hub_model": self.hub_model,
            "compacts": training.DEFAULT_COMPACTS,
            "compact_epochs": training.COMPACT_EPOCHS,
        }


@dataclass
class StepResult:
    """What a step returned, and whether it came from the cache."""

    name: str
    outputs: dict[str, Any]
    cached: bool


# Called with a description and a total (None: unknown); returns `advance(units, description=None)`.
ProgressHook = Callable[[str, int | None], Callable[..., None]]


class Pipeline:
    """Runs the demo's steps against one trace store and one output folder.

    Args:
        settings: The run's settings.
        store: The trace store that receives captured and served records.
        out_dir: Folder for the report, models, plans and step state.
        progress: Called with a description and a total when a long step starts; returns a
            function `advance(units, description=None, finished=False)` that moves that
            progress on, may replace its description, and marks it done. None shows nothing.
        say: Called with one line of status text per notable event.
    """

    def __init__(
        self,
        settings: DemoSettings,
        *,
        store: Any,
        out_dir: str | Path,
        progress: ProgressHook | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.out_dir = Path(out_dir)
        self.cache = StepCache(self.out_dir / "state")
        self._progress = progress
        self._say = say or (lambda text: logger.info("%s", text))
        self.results: dict[str, StepResult] = {}

    # -- running ---------------------------------------------------------------------------

    def run(self, steps: Sequence[str] = STEP_NAMES) -> dict[str, StepResult]:
        """Run `steps` in the loop's order; each reads earlier steps' saved outputs.

        Raises:
            PipelineError: a step name is unknown, or a step's inputs are missing.
        """
        unknown = [step for step in steps if step not in STEP_NAMES]
        if unknown:
            raise PipelineError(f"Unknown step {unknown[0]!r}: use one of {', '.join(STEP_NAMES)}.")
        for step in STEP_NAMES:
            if step in steps:
                self.run_step(step)
        return self.results

    def run_step(self, step: str) -> StepResult:
        """Run one step, or reuse its saved outputs when its inputs did not change."""
        from slmshift import pipeline_steps

        function = getattr(pipeline_steps, f"step_{step}")
        key = pipeline_steps.step_key(self, step)
        cached = self.cache.lookup(step, key)
        if cached is not None and pipeline_steps.cache_still_valid(self, step, cached):
            self._say(f"[{step}] inputs unchanged: reusing {describe_outputs(cached)}")
            result = StepResult(step, cached, cached=True)
        else:
            outputs = function(self)
            outputs["finished_at"] = datetime.now(timezone.utc).isoformat()
            self.cache.save(step, key, outputs)
            result = StepResult(step, outputs, cached=False)
        self.results[step] = result
        return result

    def outputs_of(self, step: str) -> dict[str, Any]:
        """Return the outputs of an earlier step, from this run or from the saved state.

        Raises:
            PipelineError: the step has not run yet in this output folder.
        """
        if step in self.results:
            return self.results[step].outputs
        state = self.cache.load(step)
        if state is None:
            raise PipelineError(
                f"Step {step!r} has not run in {self.out_dir}: run `slmshift demo` (or the "
                f"steps up to {step!r}) first."
            )
        return state["outputs"]

    def key_of(self, step: str) -> str:
        """Return the cache key the saved outputs of `step` were made with."""
        state = self.cache.load(step)
        if state is None:
            raise PipelineError(f"Step {step!r} has not run in {self.out_dir}.")
        return str(state["key"])

    # -- helpers for steps -----------------------------------------------------------------

    def say(self, text: str) -> None:
        self._say(text)

    def progress(self, description: str, total: int | None) -> Callable[..., None]:
        if self._progress is None:
            return lambda units=1, description=None, finished=False: None
        return self._progress(description, total)

    def captured_records(self, node: str | None = None) -> list[CallRecord]:
        """Return the teacher's records captured by the `capture` step, optionally for one node."""
        capture = self.outputs_of("capture")
        since = datetime.fromisoformat(capture["since"])
        until = datetime.fromisoformat(capture["until"])
        filters: dict[str, Any] = {"agent": self.settings.agent, "since": since, "until": until}
        if node is not None:
            filters["node"] = node
        return list(self.store.records(**filters))

    def path(self, *parts: str) -> Path:
        return self.out_dir.joinpath(*parts)


def describe_outputs(outputs: dict[str, Any]) -> str:
    """Return a short description of a step's saved outputs for the progress log."""
    paths = [str(value) for name, value in outputs.items() if name.endswith(("_path", "_dir"))]
    return ", ".join(paths[:3]) if paths else "saved results"


def records_key(records: Iterable[CallRecord]) -> str:
    """Return the cache-key part for a set of records."""
    return records_fingerprint(records)


def settings_dict(settings: DemoSettings) -> dict[str, Any]:
    return asdict(settings)


def with_overrides(settings: DemoSettings, **changes: Any) -> DemoSettings:
    return replace(settings, **changes)
