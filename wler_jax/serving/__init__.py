"""Scoring trained models: inference, chunked scoring, embeddings, reports, localisation."""
