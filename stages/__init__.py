"""The DVC stage commands: `python -m stages.<name>`, each a thin Typer app over the patchcore library."""
