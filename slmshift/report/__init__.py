"""slmshift.report."""
