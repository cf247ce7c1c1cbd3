"""The root of the errors segstream raises on purpose, and its three kinds.

Every kind keeps the built-in base callers caught before it existed (``ValueError`` for bad data
and bad settings, ``RuntimeError`` for a process or broker that cannot be set up), so ``except
ValueError`` still works; ``except SegstreamError`` now catches exactly segstream's own errors.
Like faust's ``faust.exceptions`` and Quix Streams' ``quixstreams.exceptions``.

>>> from schemas.events import EventValidationError
>>> issubclass(EventValidationError, ContractError) and issubclass(EventValidationError, ValueError)
True
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "ContractError", "ModelFitError", "SegstreamError", "SetupError"]


class SegstreamError(Exception):
    """Root of every error segstream raises on purpose."""


class ContractError(SegstreamError, ValueError):
    """Data that breaks a contract: an input event, an internal message, a stored state, a value
    the engine cannot apply. Dead-lettered with the field it names, never a crash."""


class ConfigurationError(SegstreamError, ValueError):
    """A setting, a rules file or a parameter that cannot work: one line and exit 2 at the CLI."""


class SetupError(SegstreamError, RuntimeError):
    """Something the process needs could not be set up: the local broker, a topic layout, a data
    directory, a child process."""


class ModelFitError(SegstreamError, RuntimeError):
    """A model could not be fitted to data that passed its checks (the likelihood could not be
    evaluated anywhere the optimiser looked): the model in force stays."""
