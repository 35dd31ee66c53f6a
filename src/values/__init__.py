"""The immutable values every floor above reads: the Snapshot and its parts, their JSON
codec, recordings, and how each figure is written (units)."""
