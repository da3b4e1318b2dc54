"""Every cloud keybind speaks, by name. A new cloud is one folder plus one line here."""

from __future__ import annotations

from app.providers.base import ProviderSpec
from app.providers.jdcloud.provider import SPEC as JDCLOUD
from app.providers.tencent.provider import SPEC as TENCENT

SPECS: dict[str, ProviderSpec] = {s.name: s for s in (TENCENT, JDCLOUD)}


def specs() -> dict[str, ProviderSpec]:
    return SPECS


def spec(name: str) -> ProviderSpec:
    """The provider called `name`; KeyError names the ones there are."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {sorted(SPECS)}") from None
