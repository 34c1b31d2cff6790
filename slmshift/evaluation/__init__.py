"""slmshift.evaluation."""
