"""The simulators package's public surface."""

from __future__ import annotations

import simulators


def test_package_exports_its_public_names() -> None:
    """The package's ``__all__`` is sorted and every name in it exists."""
    assert simulators.__all__ == sorted(simulators.__all__)
    assert all(hasattr(simulators, name) for name in simulators.__all__)
