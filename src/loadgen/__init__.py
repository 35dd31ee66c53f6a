"""Load generation for serverscope: load levels, engines, live results."""
