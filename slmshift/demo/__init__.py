"""The demo: an example support agent on real public datasets, and the loop run end to end."""
