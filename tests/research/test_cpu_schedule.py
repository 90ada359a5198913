"""benchmarks.research.cpu_schedule: its table, and one schedule compiled as
the command compiles it (a child process under the schedule's flag)."""

from benchmarks import figures
from benchmarks.research import cpu_schedule

MiB = 2**20


def _row(optimizer, schedule, state, temporaries, peak):
  return {'model': 'mlp', 'model_name': 'MLP', 'optimizer': optimizer,
          'schedule': schedule, 'params': 100 * MiB, 'state': state * MiB,
          'temporaries': temporaries * MiB, 'peak': peak * MiB}


def test_table_reads_the_share_of_the_state_saved_in_each_schedule():
  data = {'command': 'python -m benchmarks.research.cpu_schedule',
          'machine': {'cpu': 'CPU', 'cpu_cores': 2, 'jax': '0'},
          'rows': [_row('Alada', 'breadth-first', 100, 10, 300),
                   _row('Alada', 'depth-first', 100, 10, 300),
                   _row('Alada, 8-bit M', 'breadth-first', 20, 26, 236),
                   _row('Alada, 8-bit M', 'depth-first', 20, 10, 220)]}
  text = figures.cpu_schedule_table(data)
  assert '| Alada, 8-bit M | 20.0 | 26.0 | 236.0 | 10.0 | 220.0 |' in text
  assert ('Alada 8-bit M against Alada: breadth-first 0.800, '
          'depth-first 1.000.') in text


def test_a_schedule_compiles_in_a_child_under_its_flag():
  rows = cpu_schedule.run('depth-first', 'mlp', ['SGD+momentum'])
  assert [(r['schedule'], r['optimizer']) for r in rows] == [
      ('depth-first', 'SGD+momentum')]
  assert rows[0]['peak'] > rows[0]['params'] + rows[0]['state']
