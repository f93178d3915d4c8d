"""The wall-time estimate of a suite from counted FLOPs (lpa.tools.estimate)."""
from __future__ import annotations

import pytest
import yaml

from lpa.tools.estimate import makespan, trial_flops
from lpa.config.params import compose_params_yaml
from tests.helpers.run import REPO


def test_makespan_is_the_longest_first_list_schedule():
    assert makespan([5, 4, 3, 3, 3], 2) == 10  # 5 | 4 | 4+3 | 5+3 | 7+3: longest first, to the first free
    assert makespan([10, 1, 1], 2) == 10 and makespan([2, 2, 2, 2], 4) == 2 and makespan([3], 8) == 3


def test_the_paper_suite_counts_every_run_at_its_input_size():
    params = yaml.safe_load(compose_params_yaml([], root=REPO))
    rows = {r["trial"]: r for r in trial_flops(params)}
    assert len(rows) == len(params["trial_groups"]["train"]) + len(params["trial_groups"]["finetune"])
    cub, cifar = rows["cub200-vgg-att2-seed0"], rows["cifar100-vgg-att2-seed0"]
    assert cub["input"] == 80 and cifar["input"] == 32 and cub["images"] == 5_994 and cifar["epochs"] == 300
    # counted at 80x80 (measured 3.46x the 32x32 count: the first block sees 6.25x the pixels, the
    # later ones keep the 32x32 network's map sizes)
    assert 2 < cub["gflop_fwd"] / cifar["gflop_fwd"] < 6.25
    assert cifar["pflop"] == pytest.approx(3 * cifar["gflop_fwd"] * 1e9 * 50_000 * 300 / 1e15)
