"""slmshift.callbacks."""
