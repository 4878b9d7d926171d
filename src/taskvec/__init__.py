"""taskvec: extract and patch in-context-learning task vectors (Hendel, Geva and Globerson, 2023)."""

__version__ = "0.1.0"
