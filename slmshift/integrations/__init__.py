"""slmshift.integrations."""
