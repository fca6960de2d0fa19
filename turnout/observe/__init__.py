"""Counters, metrics exposition and the access log, kept off the request path."""
