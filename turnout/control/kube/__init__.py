"""Kubernetes: the controller-mode config source, its REST client, and status write-back.

Imported only by ``turnout serve --kubernetes``: workers and plain ``turnout serve`` never
load this package (``tests/unit/kube/test_lazy_import.py`` checks it).
"""
