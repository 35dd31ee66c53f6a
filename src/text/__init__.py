"""Renderings with rich for the commands that print rather than open the TUI: the run
summary, the compare table, the load summary, the headless demo's live view and the
attach table. Beside the TUI (which never imports this), below the commands."""
