"""slmshift.training."""
