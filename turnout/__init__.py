"""Turnout: a Python-native API gateway and traffic control plane."""

__version__ = "0.1.0"
