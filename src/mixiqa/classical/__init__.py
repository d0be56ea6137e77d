"""Classical no-reference baselines: NIQE (opinion-unaware) and BRISQUE (SVR on NSS).

Both follow the authors' MATLAB releases and ship their standard parameters (see
``mixiqa/assets/classical/README.md``); both are lower-is-better, and mixiqa's runs use
``q = -score`` as their quality. ``brisque-refit`` refits BRISQUE's SVR on a split.

    >>> from mixiqa.classical import classical_score
    >>> classical_score(image, "niqe")            # doctest: +SKIP
"""

from mixiqa.classical.brisque import (BrisqueRegressor, BrisqueSVR, brisque, brisque_features,
                                      live_model)
from mixiqa.classical.niqe import niqe, niqe_features, pristine_model
from mixiqa.classical.runner import (METHODS, SCORERS, add_classical_command, classical_score,
                                     cmd_classical, run_classical, score_paths)

__all__ = ["BrisqueRegressor", "BrisqueSVR", "brisque", "brisque_features", "live_model",
           "niqe", "niqe_features", "pristine_model", "METHODS", "SCORERS",
           "add_classical_command", "classical_score", "cmd_classical", "run_classical",
           "score_paths"]
