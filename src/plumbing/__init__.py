"""The ground floor: process plumbing that the servers, the load generator and the lab share.

Nothing here knows about HTTP, models or screens: dying with a parent, the fd limit, pid
checks, spawning `python -m module` with this tree on the path, stop-signal handlers, and
the one TCP_INFO reader. Every other package may import it; it imports none of them.
"""
