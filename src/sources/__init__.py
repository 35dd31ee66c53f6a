"""Sources of snapshots: the sampler and what it reads from, a server we started (its
scoreboard and sockets) or one we attach to (the readers, from outside)."""
