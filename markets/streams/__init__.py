"""Live streams: exchange sources, the stream runner, its lease, grace and history backfill."""
