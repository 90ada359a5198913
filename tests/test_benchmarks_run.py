"""The suite's checks (``benchmarks.run.checks``) read the results as they say."""

from benchmarks import harness
from benchmarks import run

MiB = 2**20


def memory(peak_mib: float, state_mib: float) -> harness.Memory:
  """A program whose peak and state are the given MiB (arguments only)."""
  return harness.Memory(params=0, state=int(state_mib * MiB),
                        arguments=int(peak_mib * MiB), outputs=0, aliased=0,
                        temporaries=0)


def row(peak_mib=100.0, state_mib=0.0, seconds=1.0):
  return {'memory': memory(peak_mib, state_mib),
          'time': harness.Timing([seconds] * 3)}


def results(int8_peak_mib: float, int8_seconds: float):
  """fp32 M: peak 1,000 MiB with 500 MiB of state; 8-bit M: 125 MiB of
  state (375 saved) at the given peak; the update alone: Adam 0.5 s, fp32
  Alada 1 s, 8-bit M as given."""
  model = {'SGD+momentum': row(), 'Adam': row(), 'Alada, bf16 M': row(),
           'Alada': row(1000, 500), 'Alada, 8-bit M': row(int8_peak_mib, 125)}
  update = {'Adam': row(seconds=0.5), 'Alada': row(), 'Alada, bf16 M': row(),
            'Alada, 8-bit M': row(seconds=int8_seconds)}
  return {'mlp': model, 'update': update}


def verdict(res, start):
  [(_, value, bound, says)] = [
      v for v in run.verdicts(res, quick=False) if v[0].startswith(start)]
  return round(value, 4), bound, says


def test_8bit_peak_check_is_the_share_of_the_state_saved_that_the_peak_loses():
  # 1 - (1000 - 650) / (500 - 125) = 1 - 350 / 375
  assert verdict(results(650, 1.0), 'MLP peak: 1 - peak saved') == (
      0.0667, 0.10, 'ok')
  # 1 - 200 / 375: the peak keeps most of what the state saved
  assert verdict(results(800, 1.0), 'MLP peak: 1 - peak saved') == (
      0.4667, 0.10, 'MISSED')


def test_8bit_update_check_is_its_time_over_fp32_alada():
  start = 'GPT-2-shaped update alone: Alada 8-bit M / Alada'
  assert verdict(results(650, 1.1), start) == (1.1, 1.15, 'ok')
  assert verdict(results(650, 4.5), start) == (4.5, 1.15, 'MISSED')
