"""slmshift.slm."""
