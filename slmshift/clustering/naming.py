"""Task names from distinctive terms: class-based TF-IDF over the texts of each cluster.

Each cluster's texts are joined into one document; a term's weight is its frequency in that
document times log(1 + A / f), where A is the average number of words per cluster and f the
term's frequency over all clusters, so terms common to every cluster rank low.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

TERMS_PER_TASK = 5
_IDENTIFIER_SPLIT = re.compile(r"[_.]")


def distinctive_terms(documents: Sequence[Sequence[str]], *, top: int = TERMS_PER_TASK) -> list[list[str]]:
    """Return the `top` most distinctive terms of each cluster, given each cluster's texts."""
    from sklearn.feature_extraction.text import CountVectorizer

    joined = [_IDENTIFIER_SPLIT.sub(" ", " ".join(texts)) for texts in documents]
    if not any(text.strip() for text in joined):
        return [[] for _ in documents]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", lowercase=True)
    try:
        counts = vectorizer.fit_transform(joined)
    except ValueError:  # only stop words
        return [[] for _ in documents]

    frequencies = np.asarray(counts.sum(axis=0)).ravel()
    average_words = counts.sum() / max(1, len(documents))
    idf = np.log1p(average_words / np.maximum(frequencies, 1))
    weights = counts.multiply(idf).tocsr()
    terms = vectorizer.get_feature_names_out()

    names = []
    for row in range(weights.shape[0]):
        values = weights.getrow(row).toarray().ravel()
        order = np.argsort(-values)[:top]
        names.append([str(terms[index]) for index in order if values[index] > 0])
    return names
