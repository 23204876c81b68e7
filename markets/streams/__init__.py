"""Live streams: exchange sources, the stream runner, the live book, the grace of late trades, history backfill."""
