"""A shared harness for the examples: see :mod:`examples.common.harness`."""

from examples.common.harness import OPTIMIZERS
from examples.common.harness import Task
from examples.common.harness import TrialResult
from examples.common.harness import best_per_optimizer
from examples.common.harness import format_table
from examples.common.harness import make_optimizer
from examples.common.harness import make_schedule
from examples.common.harness import make_train_step
from examples.common.harness import plot_results
from examples.common.harness import run_grid
from examples.common.harness import run_trial
from examples.common.harness import write_report

__all__ = (
    'OPTIMIZERS',
    'Task',
    'TrialResult',
    'best_per_optimizer',
    'format_table',
    'make_optimizer',
    'make_schedule',
    'make_train_step',
    'plot_results',
    'run_grid',
    'run_trial',
    'write_report',
)
