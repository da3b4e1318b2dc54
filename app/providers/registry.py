"""Every cloud keybind speaks, by name. A new cloud is one folder plus one line here."""

from __future__ import annotations

from functools import cache

from app.providers.base import ProviderSpec


@cache
def specs() -> dict[str, ProviderSpec]:
    # Imported here, not at module level: a provider's folder imports base, never the reverse.
    from app.providers.tencent.provider import SPEC as TENCENT

    return {s.name: s for s in (TENCENT,)}


def spec(name: str) -> ProviderSpec:
    """The provider called `name`; KeyError names the ones there are."""
    try:
        return specs()[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {sorted(specs())}") from None
