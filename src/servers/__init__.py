"""The server models of serverscope and the core they share (HTTP layer, scoreboard,
supervisor). Start one with `servers.supervisor.Supervisor(ServerConfig(model=...))`."""
