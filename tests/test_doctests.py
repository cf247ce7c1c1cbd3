"""The runnable examples in the docstrings of the pure engine (``models``), of the delivery guard
and of the partitioners run and hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import models

# Plus the worker's modules whose logic is pure enough to show by example.
MODULES = sorted(m.name for m in pkgutil.iter_modules(models.__path__, "models.")) + [
    "streams.cli", "streams.delivery_guard", "streams.partitioning", "streams.producer", "streams.replay", "streams.clock",
    "schemas.timestamps", "schemas.json_keys", "schemas.events", "schemas.erasure"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
