"""The command line: thin Typer commands over the core packages (see STYLE.md)."""
