"""Trades: reading trade files, storing trades, candles, replaying files, exporting."""
