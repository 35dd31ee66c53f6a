"""serverscope: a live terminal lab for server concurrency models."""

__version__ = "0.1.0"
