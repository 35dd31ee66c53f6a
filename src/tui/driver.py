"""Textual's Linux terminal driver, minus the 0.2 s it waits on its way out.

Textual reads the terminal in a thread that polls `select()` with a 0.1 s timeout; on
exit, `disable_input()` sets the thread's exit event and joins it, and the thread polls
once more for 0.1 s before it returns, with the app's event loop blocked (a sizeable part
of the 0.5 s a quit may take: bench/README.md, bench_quit.py). This driver sets the event
and goes on: the thread
ends by itself within 0.2 s, reading nothing that matters (the terminal is back in
canonical mode by then, and the pending input is flushed, as Textual does).

The thread is not a daemon: the process would still wait for it at exit, which the
console script skips (`commands.main` leaves with `os._exit` once the TUI has stopped
everything it started).
"""

from __future__ import annotations

import signal
import termios

from textual.drivers.linux_driver import LinuxDriver


class QuickExitDriver(LinuxDriver):
    def disable_input(self) -> None:
        """Stop reading the terminal, without waiting for the input thread to notice."""
        if self.exit_event.is_set():
            return
        try:
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
            self._disable_mouse_support()
        except Exception:
            pass
        self.exit_event.set()  # left set: the thread checks it every 0.1 s
        try:
            termios.tcflush(self.fileno, termios.TCIFLUSH)
        except termios.error:
            pass

    def start_application_mode(self) -> None:
        # back from a suspend (ctrl+z) that went through disable_input: the previous input
        # thread ends within 0.2 s of the event, and the event must be clear before a new
        # thread starts (Textual clears it after its join). Only then: a SIGCONT also comes
        # with a hang-up, with the old thread still reading (a join would never return).
        if self.exit_event.is_set():
            previous = self._key_thread
            if previous is not None:
                previous.join()
            self.exit_event.clear()
        super().start_application_mode()
