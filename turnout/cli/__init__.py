"""The ``turnout`` command line (Typer). Heavy modules are imported inside commands."""
