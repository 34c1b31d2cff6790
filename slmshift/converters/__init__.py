"""slmshift.converters."""
