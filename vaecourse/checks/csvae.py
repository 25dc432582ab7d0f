"""The checks that follow the exercises of lesson csvae (filled by the lesson's exercises)."""

from __future__ import annotations

__all__: list[str] = []
