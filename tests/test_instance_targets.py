"""The training targets of configs/maskrcnn_shapes.py (test `mask_map` >= 0.55 with box `map`
>= 0.55), configs/keypointrcnn_shapes.py (test `kp_map` >= 0.5) and
configs/panopticfpn_shapes.py (test `pq` >= 0.6, things and stuff printed), each within 30 minutes
on an idle 2-core CPU (slow; not run by .ci/run, whose budget one would take whole). Prints
the untrained model's figures (the trivial baseline), the evaluation curve, the wall time and
the machine's load; wall times belong in BENCHMARKS.md, not in assertions.
"""
import pytest

from test_detection_targets import check_target

pytestmark = pytest.mark.slow

TARGETS = {"maskrcnn_shapes": {"mask_map": 0.55, "map": 0.55},
           "keypointrcnn_shapes": {"kp_map": 0.5},
           "panopticfpn_shapes": {"pq": 0.6}}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_shapes_target(name, tmp_path):
  check_target(name, TARGETS[name], ["pq_things", "pq_stuff", "miou"] if "pq" in TARGETS[name]
               else ["map50"], tmp_path)
