"""The package's public surface."""

from __future__ import annotations

import monitor


def test_all_lists_exactly_the_public_names() -> None:
    """``monitor.__all__`` is sorted, resolves, and names every public class the package exports."""
    assert monitor.__all__ == sorted(monitor.__all__)
    for name in monitor.__all__:
        assert hasattr(monitor, name), name
    exported_classes = {n for n, v in vars(monitor).items()
                        if not n.startswith("_") and isinstance(v, type)}
    assert exported_classes <= set(monitor.__all__)
