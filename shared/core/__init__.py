"""The base layer: imports nothing else of shared/."""
