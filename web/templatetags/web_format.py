"""Template filters of the trader pages: the formats of core.formatting, and whether a stream feeds a market."""

from django import template

from core import formatting
from markets.streams.sources import is_streamed

register = template.Library()
FILTERS = ("price", "interval", "error_bps", "bps", "percent", "count", "model_label", "iso_stamp")
for _name in (*FILTERS, "up_percent", "up_call", "move", "window"):
    register.filter(_name, getattr(formatting, _name))
register.filter("streamed", is_streamed)
