"""The miners of scripts/build_retrieval_data.py, one module per kind of source (docs/retrieval-data.md)."""
