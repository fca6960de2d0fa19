"""Compiled request routing (Gateway API precedence)."""
