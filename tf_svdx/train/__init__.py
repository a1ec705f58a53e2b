"""Training loops: shared plumbing (loop.py) and one module per model."""
