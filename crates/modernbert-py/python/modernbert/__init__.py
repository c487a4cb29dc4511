"""ModernBERT inference on CPU, in Rust, with sentence-transformers names.

>>> import modernbert
>>> m = modernbert.Model.load("path/or/hub-id")          # or Model("path/or/hub-id")
>>> m.encode(["first text", "second text"]).shape       # (2, m.dimension), float32
>>> m.fill_mask("Paris is the [MASK] of France.", top_k=3)
>>> m.rerank("what is rust?", ["Rust is a language.", "Paris"])

See docs/python.md in the repository for the whole API, threads, and Ray / Spark scale-out.
"""

from ._modernbert import Model, __version__

__all__ = ["Model", "__version__"]
