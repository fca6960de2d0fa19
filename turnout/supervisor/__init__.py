"""Process model: bind listeners, run workers, fan configuration out, aggregate stats."""
