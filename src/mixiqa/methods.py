"""The alignment methods as data: which mapper, which targets, which losses, which batches.

A method is what differs between the papers when the regressor, data and splits are the
same. ``mixiqa train`` and ``mixiqa bench`` take a method by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixiqa.registry import Registry


@dataclass(frozen=True)
class Method:
    """One way to learn from mixed datasets.

    Attributes:
        name: Registry key.
        mapper: Mapper family per training dataset (see ``mixiqa.models.mappers``).
        targets: ``raw`` (each dataset's own scores, as given) or ``rescaled`` (each
            dataset's training scores min-max rescaled to [0, 10], DMOS flipped so that
            higher is better everywhere, as MonotonicIQA's reference code does).
        losses: Loss name -> weight, applied per dataset on ``g_k(q)`` and summed.
        sampler: ``mixed`` (per-dataset quotas) or ``domain`` (k domains x n images).
        post_fit: Mapper fitted after training on (proxy, score) pairs of the training
            split, for methods whose loss learns no mapper (SIND, rank loss).
        reference: The paper.
    """

    name: str
    mapper: str
    targets: str
    losses: dict = field(default_factory=dict)
    sampler: str = "mixed"
    post_fit: str | None = None
    reference: str = ""
    summary: str = ""


METHODS: Registry[Method] = Registry("method")

# losses computed on each dataset's part of a batch; ``sind`` and ``range_prior`` are one
# term over the whole batch, and SIND's averages per-domain terms that may be weighted too
PER_DATASET_LOSSES = ("smooth_l1", "norm_in_norm", "plcc", "fidelity", "consistency")
DATASET_WEIGHTED_LOSSES = PER_DATASET_LOSSES + ("sind",)


def _add(m: Method) -> None:
    METHODS.register(m.name, m)


_add(Method("naive", "identity", "raw", {"smooth_l1": 1.0}, post_fit="affine",
            summary="pool every dataset's raw scores as they are (no alignment)"))
_add(Method("linear", "identity", "rescaled", {"smooth_l1": 1.0}, post_fit="affine",
            reference="UNIQUE-Linear (Zhang et al., TIP 2021)",
            summary="rescale each dataset to [0, 10] linearly, then pool"))
_add(Method("zscore", "identity", "zscore", {"smooth_l1": 1.0}, post_fit="affine",
            summary="standardise each dataset's scores (training mean and std), then pool"))
_add(Method("monotonic", "monotonic", "rescaled", {"smooth_l1": 1.0, "norm_in_norm": 1.0},
            reference="Learning from Mixed Datasets: A Monotonic Image Quality Assessment Model",
            summary="per-dataset positive-weight MLP mapper, smooth-L1 + norm-in-norm"))
_add(Method("mimi", "mimi", "rescaled",
            {"smooth_l1": 1.0, "consistency": 2.0, "range_prior": 1.0 / 6},
            reference="MIMI: Monotonic and Invertible Network (IJCV 2025)",
            summary="monotonic + invertible coupling mapper, range-overlap prior"))
_add(Method("sind", "sind", "rescaled", {"sind": 1.0}, sampler="domain", post_fit="sind",
            reference="SIND: Learning Scene-invariant Distribution (TCSVT 2025)",
            summary="closed-form per-dataset median/MAD alignment, k datasets x n per batch"))
_add(Method("fidelity", "identity", "rescaled", {"fidelity": 1.0}, post_fit="logistic4",
            reference="UNIQUE (TIP 2021) / LIQE (CVPR 2023): Thurstone fidelity loss",
            summary="rank pairs inside each dataset only (scale-free)"))
_add(Method("affine", "affine", "rescaled", {"smooth_l1": 1.0, "norm_in_norm": 1.0},
            summary="learned per-dataset affine mapper (a > 0)"))
_add(Method("logistic", "logistic4", "rescaled", {"smooth_l1": 1.0, "norm_in_norm": 1.0},
            summary="learned per-dataset 4-parameter logistic mapper"))


def get_method(name: str) -> Method:
    return METHODS.get(name)
