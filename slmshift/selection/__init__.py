"""slmshift.selection."""
