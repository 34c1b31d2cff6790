"""slmshift.curation."""
