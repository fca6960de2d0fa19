"""Response caching (RFC 9111): the rules, the stores and the shared Redis tier."""
