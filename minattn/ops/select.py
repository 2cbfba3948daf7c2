"""Ops that pick elements: masks, gathers, triangles, sorting and the arg-reductions."""

from __future__ import annotations

__all__: list[str] = []
TENSOR_METHODS: dict = {}
