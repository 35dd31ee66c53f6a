"""serverscope beyond the terminal: a Prometheus exporter (`export.prometheus`) and the TUI
served to a browser (`export.web`). Both only read the snapshots whoever samples hands them."""
