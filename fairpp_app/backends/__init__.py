"""Model backends: a small contract (``base``) and a lazy registry (``registry``)."""
