"""Buy 'Til You Die (BTYD) models of customer lifetime value.

Two classic probability models, fitted by maximum likelihood on per-customer sufficient
statistics, and the per-customer predictions derived from them:

* BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") for *how often* a
  customer buys and whether they are still "alive".
* Gamma-Gamma (Fader & Hardie 2013, http://www.brucehardie.com/notes/025/) for *how much* they
  spend per repeat purchase.

The sufficient statistics follow the ``lifetimes`` conventions: ``x`` (frequency) is the number
of *repeat* purchase days, ``t_x`` (recency) the time from the first to the last purchase, ``T``
the time from the first purchase to the end of observation, and ``m`` the mean spend over the
repeat purchase days.

All time quantities (``t_x``, ``T``, the prediction horizon ``t`` and the fitted ``alpha``) are in
DAYS; converting from other units is the caller's job. Only ``alpha`` carries a time unit, so
parameters published in weeks convert with ``alpha_days = 7 * alpha_weeks``.

The prediction functions accept Python scalars (fast ``math`` path, for use per event in the
stream processor) or numpy arrays (broadcast, for batch scoring). They return finite,
non-negative values for any valid parameters, including the degenerate ones a fit produces when
its likelihood peaks at a boundary (see :func:`fit_beta_geo`): the hypergeometric closed form is
used only where it is known to be accurate, and a quadrature / series evaluation elsewhere.

The package keeps one concept per module: :mod:`.parameters`, :mod:`.fitting`, :mod:`.prediction`
(P(alive) and expected purchases) and :mod:`.clv`; everything public is imported from here.
"""

from __future__ import annotations

from models.btyd.clv import DAYS_PER_MONTH, customer_lifetime_value, expected_average_spend
from models.btyd.fitting import fit_beta_geo, fit_gamma_gamma
from models.btyd.parameters import BetaGeoParams, GammaGammaParams
from models.btyd.prediction import expected_purchases, prob_alive

__all__ = [
    "BetaGeoParams",
    "GammaGammaParams",
    "fit_beta_geo",
    "fit_gamma_gamma",
    "prob_alive",
    "expected_purchases",
    "expected_average_spend",
    "customer_lifetime_value", "DAYS_PER_MONTH",
]
