"""FLOP counts from the architecture agree with PyTorch's FLOP counter on the official code
(../shared/BENCHMARKS.md: GFLOPs per clip)."""

import pytest

from hacm_tf import bench
from hacm_tf.config import ModelConfig
from hacm_tf.models.pretrainer import MaskedPretrainer


@pytest.mark.parametrize("method,window,t_patch,gflops", [("hacm", 72, 3, 19.1), ("mamp", 120, 4, 37.6)])
def test_pretraining_flops_match_the_reference_counter(method, window, t_patch, gflops):
    m = MaskedPretrainer(ModelConfig(method=method, window=window, t_patch=t_patch).validate().to_dict())
    assert bench.pretrain_flops_per_sample(m) / 1e9 == pytest.approx(gflops, rel=0.01)


@pytest.mark.parametrize("method,window,t_patch,gflops", [("hacm", 72, 3, 14.0), ("mamp", 120, 4, 28.1)])
def test_classifier_flops_match_the_reference_counter(method, window, t_patch, gflops):
    cfg = ModelConfig(method=method, window=window, t_patch=t_patch).validate()
    assert bench.classifier_flops_per_sample(cfg) / 1e9 == pytest.approx(gflops, rel=0.01)


def test_data_throughput_reports_a_rate(synthetic_dir):
    r = bench.data_throughput(synthetic_dir, batch_size=8, window=16, steps=2, warmup=1)
    assert r["samples_per_second"] > 0 and r["batch_size"] == 8
