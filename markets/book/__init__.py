"""The order book: the in-memory book and its window features, book files, replay and stored windows."""
