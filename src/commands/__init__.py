"""The `serverscope` command line, the top floor: one module per subcommand, each with its
parser; `main` ties them together. Nothing in the lab, the TUI or the renderers imports it."""
