"""The control API: the running switch's HTTP/JSON surface for the CLI (127.0.0.1 and a token)."""
