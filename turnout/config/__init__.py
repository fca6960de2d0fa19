"""The declarative model: parse manifests strictly, validate across objects, report located problems.

Nothing here does network I/O or imports asyncio; the data plane and the control plane
both build on these types.
"""
