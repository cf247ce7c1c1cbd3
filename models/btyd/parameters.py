"""The fitted parameters of the BG/NBD and Gamma-Gamma models, and the array helpers the
models share (see :mod:`models.btyd` for the conventions and units)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Union

import numpy as np

from schemas.errors import ConfigurationError, ContractError


ArrayLike = Union[float, int, np.ndarray, Sequence[float]]

# lifetimes' ``customer_lifetime_value(..., freq="D")`` counts a month as 30 days; kept so that
# our CLV numbers are comparable with it.
DAYS_PER_MONTH = 30

# Types accepted by the scalar fast path. np.float64 is a float subclass; numpy integers and
# float32 are not, so they are listed explicitly.
_SCALAR_TYPES = (int, float, np.integer, np.floating)


def _all_scalar(*values: Any) -> bool:
    for value in values:
        if not isinstance(value, _SCALAR_TYPES):
            return False
    return True


def _to_float_or_array(result: np.ndarray) -> float | np.ndarray:
    # 0-d results (numpy scalars passed through the array path) are returned as plain floats
    # so callers get the same type as from the scalar path.
    return float(result) if np.ndim(result) == 0 else result


def _check_positive_finite(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigurationError(f"{owner}.{name} must be a positive finite number, got {value!r}")
    return value


def _params_from_dict(cls: type, data: Mapping[str, float]) -> Any:
    names = [f.name for f in fields(cls)]
    missing = [name for name in names if name not in data]
    if missing:
        raise ContractError(f"{cls.__name__}.from_dict: missing key(s) {missing}; expected {names}")
    # Extra keys are ignored on purpose: stored parameter records may carry metadata
    # (fit time, number of customers, ...) next to the parameters.
    return cls(**{name: float(data[name]) for name in names})


@dataclass(frozen=True, slots=True)
class BetaGeoParams:
    """Parameters of the BG/NBD purchase model, with ``alpha`` in days.

    Purchase rates are Gamma(shape ``r``, rate ``alpha``) across customers, so ``alpha`` is a
    time scale; the per-purchase drop-out probability is Beta(``a``, ``b``).

    Examples
    --------
    >>> params = BetaGeoParams(r=0.243, alpha=30.9, a=0.793, b=2.426)
    >>> BetaGeoParams.from_dict(params.to_dict()) == params
    True
    """

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for f in fields(self):
            # object.__setattr__ because the dataclass is frozen; values are normalised to
            # float so numpy scalars never leak into the hot path or into serialised dicts.
            object.__setattr__(
                self, f.name, _check_positive_finite("BetaGeoParams", f.name, getattr(self, f.name))
            )

    def to_dict(self) -> dict[str, float]:
        """Return the parameters as a plain ``{"r", "alpha", "a", "b"}`` dict."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> BetaGeoParams:
        """Build from a mapping with keys ``r``, ``alpha``, ``a``, ``b`` (extra keys ignored)."""
        return _params_from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Parameters of the Gamma-Gamma spend model (``v`` is in money units).

    A customer's mean spend per transaction is ``p / nu`` with ``nu ~ Gamma(q, v)``; the
    population mean spend ``p * v / (q - 1)`` is finite only for ``q > 1``.

    Examples
    --------
    >>> gg = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> gg.to_dict()
    {'p': 6.25, 'q': 3.74, 'v': 15.44}
    """

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(
                self, f.name, _check_positive_finite("GammaGammaParams", f.name, getattr(self, f.name))
            )

    def to_dict(self) -> dict[str, float]:
        """Return the parameters as a plain ``{"p", "q", "v"}`` dict."""
        return {"p": self.p, "q": self.q, "v": self.v}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> GammaGammaParams:
        """Build from a mapping with keys ``p``, ``q``, ``v`` (extra keys ignored)."""
        return _params_from_dict(cls, data)
