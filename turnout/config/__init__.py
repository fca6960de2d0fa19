"""The declarative model: strict parsing, cross-object validation, located problems.

Nothing here does network I/O or imports asyncio; the data plane and the control plane
both build on these types.
"""
