"""Request and response filters, compiled per snapshot into plain objects with ``apply``."""
