"""Mixed-dataset samplers: quotas, oversampling of small sets, domain batches, determinism."""

import numpy as np
import pytest

from mixiqa.data.sampling import DomainBatchSampler, MixedBatchSampler
from mixiqa.errors import ConfigError

DOM = np.array([0] * 90 + [1] * 10)  # a large and a small dataset


def test_equal_quotas_keep_small_dataset_visible():
    s = MixedBatchSampler(DOM, batch_size=8, quotas="equal", seed=1)
    assert s.quotas == [4, 4]
    for batch in s:
        assert sorted(DOM[batch].tolist()) == [0] * 4 + [1] * 4
    # the 10 small-set images are each drawn repeatedly (oversampled), none dropped
    seen = {i for b in s for i in b if DOM[i] == 1}
    assert seen == set(range(90, 100))


def test_proportional_quotas_give_every_domain_one():
    s = MixedBatchSampler(DOM, batch_size=10, quotas="proportional")
    assert sum(s.quotas) == 10 and min(s.quotas) >= 1 and s.quotas[0] > s.quotas[1]


def test_deterministic_per_epoch_and_different_across_epochs():
    a, b = MixedBatchSampler(DOM, 8, seed=3), MixedBatchSampler(DOM, 8, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_bad_quotas():
    with pytest.raises(ConfigError, match="summing"):
        MixedBatchSampler(DOM, 8, quotas=[3, 3])
    with pytest.raises(ConfigError, match="smaller than"):
        MixedBatchSampler(np.arange(5), 3)


def test_domain_batches_hold_k_domains_of_n():
    dom = np.repeat(np.arange(4), 25)
    s = DomainBatchSampler(dom, k=2, n=5, seed=0)
    for batch in s:
        d = dom[batch]
        assert len(batch) == 10 and len(set(d[:5])) == 1 and len(set(d[5:])) == 1
        assert d[0] != d[5]
    with pytest.raises(ConfigError, match="only 4 domains"):
        DomainBatchSampler(dom, k=5)


def _sind_config(quotas, domain="dataset"):
    from mixiqa.config import config_from_dict

    return config_from_dict({"datasets": [{"name": "a", "root": "."}, {"name": "b", "root": "."}],
                             "method": {"name": "sind", "domain": domain},
                             "train": {"batch_size": 8, "quotas": quotas, "seed": 1}})


def test_sind_takes_per_dataset_quotas():
    from mixiqa.methods import get_method
    from mixiqa.train import make_sampler

    sind = get_method("sind")
    # equal quotas: SIND's own k-domains x n sampler, as every committed SIND run used
    assert isinstance(make_sampler(sind, DOM, DOM, _sind_config("equal")), DomainBatchSampler)
    # counts per dataset: every batch holds both datasets in those numbers
    s = make_sampler(sind, DOM, DOM, _sind_config([2, 6]))
    assert isinstance(s, MixedBatchSampler)
    for batch in s:
        assert sorted(DOM[batch].tolist()) == [0] * 2 + [1] * 6
    # scene domains are not datasets: per-dataset quotas would be ignored, so the config
    # refuses them
    scenes = np.arange(100) // 10
    assert isinstance(make_sampler(sind, DOM, scenes, _sind_config("equal", "scene")),
                      DomainBatchSampler)
    with pytest.raises(ConfigError, match="leave quotas: equal"):
        _sind_config([2, 6], domain="scene")


def test_bad_quotas_are_refused_when_the_config_is_read():
    for bad in ([2, 2], [8, 0], "half", 8):
        with pytest.raises(ConfigError, match="train.quotas must be"):
            _sind_config(bad)
    assert _sind_config("proportional").train.quotas == "proportional"
