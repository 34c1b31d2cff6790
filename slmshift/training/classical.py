"""The classical floor for label tasks: TF-IDF features with logistic regression (scikit-learn).

Every SLM candidate for a label task must beat this classifier on agreement and on coverage at
the target agreement; when it does not, the classifier itself is served, through the same
`SLMGenerator` interface (`slmshift.slm.classical`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmshift.slm.base import SLMManifest
from slmshift.training.compact import data_hash

logger = logging.getLogger(__name__)

MODEL_FILE = "classifier.joblib"


@dataclass(frozen=True)
class ClassicalConfig:
    """TF-IDF and logistic-regression settings."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    sublinear_tf: bool = True
    min_df: int = 1
    c: float = 10.0
    max_iter: int = 2000
    seed: int = 0


def build_pipeline(config: ClassicalConfig) -> Any:
    """A scikit-learn pipeline: word and character TF-IDF side by side, then logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(
                ngram_range=config.word_ngrams, sublinear_tf=config.sublinear_tf,
                min_df=config.min_df, lowercase=True,
            )),
            ("chars", TfidfVectorizer(
                analyzer="char_wb", ngram_range=config.char_ngrams,
                sublinear_tf=config.sublinear_tf, min_df=config.min_df, lowercase=True,
            )),
        ]
    )
    classifier = LogisticRegression(C=config.c, max_iter=config.max_iter, random_state=config.seed)
    return Pipeline([("features", features), ("classifier", classifier)])


def train_classical(
    train: Sequence[tuple[str, str]],
    output_dir: str | Path,
    *,
    task: str | None = None,
    config: ClassicalConfig | None = None,
) -> tuple[Path, float]:
    """Fit the classifier on `(input text, label)` pairs, save it, and return the directory and seconds.

    Raises:
        ValueError: fewer than two distinct labels.
    """
    import joblib

    config = config or ClassicalConfig()
    labels = sorted({label for _, label in train})
    if len(labels) < 2:
        raise ValueError(
            f"The classical floor needs at least two distinct labels, got {labels!r}."
        )
    started = time.perf_counter()
    pipeline = build_pipeline(config)
    pipeline.fit([text for text, _ in train], [label for _, label in train])
    seconds = time.perf_counter() - started

    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the TF-IDF vocabulary holds words from the traces
    joblib.dump(pipeline, directory / MODEL_FILE)
    SLMManifest(
        kind="classical",
        base_model="scikit-learn TF-IDF (word 1-2 grams + character 2-5 grams) with logistic regression",
        task=task,
        output_kind="label",
        labels=[str(label) for label in pipeline.classes_],
        data_hash=data_hash(train),
        hyperparameters={key: list(value) if isinstance(value, tuple) else value
                         for key, value in asdict(config).items()},
        metrics={"training": {"seconds": round(seconds, 2), "examples": len(train)}},
        created_at=datetime.now(timezone.utc).isoformat(),
        extra={"input": "last user message", "model_file": MODEL_FILE},
    ).save(directory)
    return directory, seconds
