"""Scene-graph backends behind one registry: ``get_backend(name, **options)``.

A backend has ``name``, ``version`` and ``parse_batch(captions) -> list[Graph]``.
"""

from __future__ import annotations

import importlib
from typing import Protocol, Sequence

from tir.errors import UserError
from tir.knowledge.graphs.schema import Graph

BACKENDS: dict[str, str] = {
    "spacy": "tir.knowledge.graphs.spacy_backend:SpacyBackend",
    "sng": "tir.knowledge.graphs.sng_backend:SngBackend",
    "stanza": "tir.knowledge.graphs.stanza_backend:StanzaBackend",
}


class Backend(Protocol):
    """What every scene-graph parser offers."""

    name: str
    version: str

    @staticmethod
    def identity(**options) -> dict[str, object]: ...

    def parse_batch(self, captions: Sequence[str]) -> list[Graph]: ...


def backend_class(name: str) -> type:
    """The class of backend ``name``; it offers ``identity(**options)`` without loading any model."""
    target = BACKENDS.get(name)
    if target is None:
        raise UserError(f"unknown graph backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, cls = target.split(":")
    return getattr(importlib.import_module(module_name), cls)


def backend_identity(name: str, **options) -> dict[str, object]:
    """What determines backend ``name``'s output with ``options`` (cheap: no model is loaded)."""
    return backend_class(name).identity(**{k: v for k, v in options.items() if v is not None})


def get_backend(name: str, **options) -> Backend:
    """Build the backend ``name`` (spacy, sng, stanza) with its ``options`` (None values dropped)."""
    return backend_class(name)(**{k: v for k, v in options.items() if v is not None})
