"""slmshift.clustering."""
