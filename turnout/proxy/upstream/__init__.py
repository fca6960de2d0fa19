"""Upstream endpoints, balancers, connections and pools."""
