"""Per-dataset score mappers g_k: the shared proxy score q -> the scores of dataset k.

A shared regressor gives one proxy score q per image; each training dataset k gets a
mapper onto its own scale, and the loss compares g_k(q) with that dataset's scores.
Every mapper is a torch module in the manner of a scikit-learn estimator:

- hyperparameters are the ``__init__`` arguments, kept under their own names and
  returned by :meth:`Mapper.config`, so ``create_mapper(**m.config())`` rebuilds it;
- ``fit(q, y)`` fits the mapper alone (closed form where there is one) and returns it;
  closed-form state carries a trailing underscore (``slope_``, ``score_center_``);
- all state lives in parameters and buffers, so a model file (safetensors) holds it;
- ``inverse(y)`` maps scores back into proxy space for the monotone mappers.

Direction: every mapper takes ``higher_better``. With ``False`` (DMOS-style scores) the
output is negated, so q stays "higher is better" for every dataset. The attributes
``monotone``, ``strictly_increasing`` and ``invertible`` describe the mapper for
``higher_better=True``; with ``False`` read "decreasing" for "increasing".

Modules: :mod:`.base` (registry, base class, shared numerics), :mod:`.closed_form`
(identity, linear rescaling, affine, logistic, SIND), :mod:`.learned` (MonotonicIQA, MIMI).
"""

from __future__ import annotations

import inspect

from mixiqa.errors import ConfigError
from mixiqa.models.mappers.base import MAPPERS, Mapper, location_scale, monotone_inverse
from mixiqa.models.mappers.closed_form import (AffineMapper, IdentityMapper,
                                               LinearRescaleMapper, Logistic4Mapper,
                                               SindMapper)
from mixiqa.models.mappers.learned import (MIMIMapper, MonotonicBlock, MonotonicMapper,
                                           PositiveLinear, clenshaw_curtis)

__all__ = ["MAPPERS", "Mapper", "create_mapper", "location_scale", "monotone_inverse",
           "AffineMapper", "IdentityMapper", "LinearRescaleMapper", "Logistic4Mapper",
           "SindMapper", "MIMIMapper", "MonotonicBlock", "MonotonicMapper", "PositiveLinear",
           "clenshaw_curtis"]


def create_mapper(name: str, **kwargs) -> "Mapper":
    """Build a registered mapper by name, e.g. ``create_mapper("mimi", hidden=(32, 32))``."""
    cls = MAPPERS.get(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        names = ", ".join(inspect.signature(cls).parameters)
        raise ConfigError(f"mapper '{name}': {err}. Its hyperparameters are: {names}.") from None
    return cls(**kwargs)


