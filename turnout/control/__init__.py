"""Turnout's control plane: the store, the admin API and the reconcilers."""
