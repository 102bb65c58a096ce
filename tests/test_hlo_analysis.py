"""Reading compiled programs: replica groups in XLA's three spellings, the mesh axis a
collective runs over, result bytes, the model's matmul FLOPs, and libtpu's v4 estimate."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meena_jax import hlo_analysis

MESH = types.SimpleNamespace(devices=np.empty((4, 8)), axis_names=("data", "model"))
MODEL_GROUPS = [list(range(8 * i, 8 * i + 8)) for i in range(4)]
DATA_GROUPS = [list(range(j, 32, 8)) for j in range(8)]


@pytest.mark.parametrize("attributes, groups", [
    ("replica_groups={{0,1,2,3,4,5,6,7},{8,9,10,11,12,13,14,15},{16,17,18,19,20,21,22,23},"
     "{24,25,26,27,28,29,30,31}}, use_global_device_ids=true", MODEL_GROUPS),
    ("replica_groups=[4,8]<=[32], use_global_device_ids=true", MODEL_GROUPS),
    ("replica_groups=[8,4]<=[4,8]T(1,0), use_global_device_ids=true", DATA_GROUPS),
    ("replica_groups=mesh['axis_0'=4,'axis_1'=1,'axis_2'=8] {'axis_2'}, use_global_device_ids",
     MODEL_GROUPS),
    ("replica_groups=mesh['axis_0'=8,'axis_1'=1,'axis_2'=4], device_ids=([4,8]T(1,0)) "
     "{'axis_0'}, use_global_device_ids=true", [[j * 8 + i for i in range(8)] for j in range(4)]),
    ("replica_groups=mesh['axis_0'=4,'axis_1'=8] {'axis_0'}", DATA_GROUPS),
])
def test_replica_groups_in_every_spelling(attributes, groups):
  assert sorted(map(sorted, hlo_analysis.replica_groups(attributes))) == sorted(groups)


HLO = """
ENTRY %main {
  %all-reduce.1 = bf16[8,128,2560]{1,2,0:T(8,128)(2,1)} all-reduce(%x), channel_id=1, replica_groups=[4,8]<=[32], to_apply=%add
  %all-reduce.2 = (f32[8,128]{1,0}, f32[8,128]{1,0}) all-reduce(%a, %b), replica_groups=mesh['axis_0'=4,'axis_1'=8] {'axis_0'}, to_apply=%add
  %all-gather = bf16[8,128,2560]{1,0,2} all-gather(%y), replica_groups=[4,8]<=[32], dimensions={2}
  %collective-permute = bf16[8,128,160]{1,2,0} collective-permute(%z), source_target_pairs={{1,0},{2,1},{9,8}}
  %all-gather-start = (f32[4]{0}, f32[32]{0}) all-gather-start(%w), replica_groups={{0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31}}, dimensions={0}
  %all-gather-done = f32[32]{0} all-gather-done(%all-gather-start)
}
"""


def test_collectives_by_kind_axis_and_result_bytes():
  found = hlo_analysis.collectives(HLO, MESH)
  assert found["all-reduce"] == {"count": 2, "bytes": 8 * 128 * 2560 * 2 + 2 * 8 * 128 * 4,
                                 "over": {"model": 1, "data": 1}}
  assert found["all-gather"] == {"count": 2, "bytes": 8 * 128 * 2560 * 2 + 32 * 4,
                                 "over": {"model": 1, "all": 1}}
  assert found["collective-permute"]["over"] == {"model": 1}


def test_matmul_flops_count_every_dot_and_loop_iteration():
  x, w = jnp.ones((4, 8)), jnp.ones((8, 16))
  assert hlo_analysis.matmul_flops(lambda a, b: a @ b, x, w) == 2 * 4 * 8 * 16
  def three(a, b):
    return jax.lax.scan(lambda c, _: (c, jnp.tanh(c @ b)), a, None, length=3)[1]
  assert hlo_analysis.matmul_flops(three, x, w) == 3 * 2 * 4 * 8 * 16
  assert hlo_analysis.matmul_flops(jax.checkpoint(lambda a, b: a @ b), x, w) == 2 * 4 * 8 * 16


def test_v4_concat_bitcasts_are_added_back_and_a_missing_estimate_is_none():
  text = 'custom_call_target="ConcatBitcast" ' * 3
  assert hlo_analysis.predicted_seconds({"optimal_seconds": -2.998}, text) == pytest.approx(0.002)
  assert hlo_analysis.predicted_seconds({"optimal_seconds": -1.5}, "") is None
  assert hlo_analysis.predicted_seconds({}, text) is None
