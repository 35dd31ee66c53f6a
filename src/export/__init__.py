"""serverscope beyond the terminal: a Prometheus exporter (`export.prometheus`) and the TUI
served to a browser (`serverscope web`, in commands.web). Both only read the snapshots
whoever samples hands them."""
