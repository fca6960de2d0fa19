"""Standard-library-only leaves shared by every layer."""
