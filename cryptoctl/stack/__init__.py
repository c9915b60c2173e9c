"""Runtimes of the stack: the local one (server processes from wheels) and docker compose."""
