"""The HTTP/2 server codec overrides private hooks of ``h2``: fail loudly, naming the hook,
when the installed ``h2`` lacks one (its pin in pyproject.toml is the range that has them)."""

from __future__ import annotations

import inspect

import h2
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection

from turnout.proxy.protocols.http2_overrides import H2_PRIVATE_NAMES, ServerH2Connection


def _owner_instance(owner: type) -> object:
    if owner is H2Connection:
        return H2Connection(H2Configuration(client_side=False))
    return owner


@pytest.mark.parametrize(
    ("owner", "name"), H2_PRIVATE_NAMES, ids=[f"{o.__name__}.{n}" for o, n in H2_PRIVATE_NAMES]
)
def test_installed_h2_has_every_private_name_the_codec_uses(owner: type, name: str) -> None:
    assert hasattr(_owner_instance(owner), name), (
        f"h2 {h2.__version__} has no {owner.__name__}.{name}, which "
        "turnout/proxy/protocols/http2_overrides.py relies on: install the h2 version "
        "pinned in pyproject.toml, or port ServerH2Connection to this h2"
    )


def test_every_override_matches_a_hook_of_h2_with_the_same_parameters() -> None:
    overridden = [
        name
        for name, value in vars(ServerH2Connection).items()
        if callable(value)
        and name.startswith("_")
        and not name.startswith("__")
        and name not in ("_refuse", "_reset_quietly")  # our own helpers
    ]
    assert overridden  # the list below is what H2_PRIVATE_NAMES must cover
    listed = {n for o, n in H2_PRIVATE_NAMES if o is H2Connection}
    for name in overridden:
        assert name in listed, f"{name} overrides h2 but is missing from H2_PRIVATE_NAMES"
        hook = getattr(H2Connection, name, None)
        assert hook is not None, f"h2 {h2.__version__} has no H2Connection.{name} to override"
        ours = list(inspect.signature(getattr(ServerH2Connection, name)).parameters)
        theirs = list(inspect.signature(hook).parameters)
        assert ours == theirs, (
            f"h2 {h2.__version__}: H2Connection.{name}{tuple(theirs)} no longer takes the "
            f"parameters ServerH2Connection overrides it with {tuple(ours)}"
        )
