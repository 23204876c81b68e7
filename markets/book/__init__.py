"""The order book: the in-memory book, book files, live ingest, replay and stored windows."""
