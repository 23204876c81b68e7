"""MkDocs hook: the Benchmarks page's table, generated from bench/results/*.json at every build."""

from __future__ import annotations

from bench.table import render

MARKER = "<!-- benchmarks-table -->"


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, render()) if MARKER in markdown else markdown
