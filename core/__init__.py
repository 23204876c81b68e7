"""Dependency-free helpers every app uses (settings parsing, bulk writes, Redis, embedded servers).

Nothing here imports an app or the project configuration.
"""
