//! HTTP serving for ModernBERT (TEI-compatible routes, OpenAI embeddings, dynamic batching).
