"""The lab: a live session of one model under one load, the demo scenarios and their player,
and the run summary. Below the TUI and the commands: no argparse, rich or Textual here."""
