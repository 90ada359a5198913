"""Measuring optimizers: compiled peak memory of a donated train step, times.

Memory figures come from XLA's own analysis of the compiled program
(``compiled.memory_analysis()``): nothing is allocated to get them and they are
deterministic. The peak of a program is what it needs resident at once:

    peak = arguments + outputs - aliased (donated) + temporaries

With params and optimizer state donated, their outputs reuse the inputs'
buffers, so the peak is params + state + the largest set of temporaries alive
at one time (activations, gradients, the optimizer's intermediates).

Times are wall-clock medians of interleaved runs (each round runs every
optimizer once, in a rotated order), after warm-up, with their spread
(interquartile range; every time is kept in ``results.json``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import alada_optax
from benchmarks import models as models_lib

LEARNING_RATE = 1e-3

# name -> factory. SGD with momentum is the floor for any method with a first
# moment: params + one momentum.
OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    'SGD+momentum': lambda: optax.sgd(LEARNING_RATE, momentum=0.9),
    'Adam': lambda: optax.adam(LEARNING_RATE),
    'Adafactor': lambda: optax.adafactor(LEARNING_RATE),
    'Adafactor+momentum': lambda: optax.adafactor(LEARNING_RATE, momentum=0.9),
    'Alada': lambda: alada_optax.alada(LEARNING_RATE),
    'Alada, bf16 M': lambda: alada_optax.alada(
        LEARNING_RATE, mu_dtype=jnp.bfloat16),
    'Alada, 8-bit M': lambda: alada_optax.alada(LEARNING_RATE, mu_dtype='int8'),
}


def tree_bytes(tree: Any) -> int:
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


@dataclasses.dataclass
class Memory:
  """Bytes of one compiled program (see the module docstring)."""

  params: int
  state: int
  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def peak(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries

  @classmethod
  def of(cls, compiled, params, state) -> 'Memory':
    m = compiled.memory_analysis()
    return cls(tree_bytes(params), tree_bytes(state),
               m.argument_size_in_bytes, m.output_size_in_bytes,
               m.alias_size_in_bytes, m.temp_size_in_bytes)


def train_step(model: models_lib.Model, opt: optax.GradientTransformation):
  """The plain train step: grads of the loss, optimizer update, apply."""

  def step(params, state, batch):
    grads = jax.grad(model.loss)(params, batch)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def update_step(opt: optax.GradientTransformation):
  """The optimizer alone: update and apply, given the gradients."""

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


@dataclasses.dataclass
class Program:
  """A compiled donated step with its abstract inputs."""

  compiled: Any
  params: Any  # abstract
  state: Any  # abstract
  third: Any  # abstract batch or gradients
  memory: Memory
  compile_s: float


def compile_program(step, params, opt, third) -> Program:
  """Compiles ``step(params, state, third)`` with params and state donated."""
  state = jax.eval_shape(opt.init, params)
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, state, third).compile()
  seconds = time.perf_counter() - start
  return Program(compiled, params, state, third,
                 Memory.of(compiled, params, state), seconds)


def compile_all(make: Callable[[str], Any], names, jobs: int) -> dict[str, Any]:
  """{name: make(name)}, compiled on ``jobs`` threads (XLA drops the GIL)."""
  with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
    futures = {n: pool.submit(make, n) for n in names}
    return {n: f.result() for n, f in futures.items()}


def compile_train_step(model: models_lib.Model,
                       opt: optax.GradientTransformation) -> Program:
  params = jax.eval_shape(model.init, jax.random.key(0))
  batch = jax.eval_shape(model.batch, jax.random.key(1))
  return compile_program(train_step(model, opt), params, opt, batch)


def compile_update_step(params, opt: optax.GradientTransformation) -> Program:
  return compile_program(update_step(opt), params, opt, params)


@dataclasses.dataclass
class Timing:
  seconds: list[float]

  @property
  def median(self) -> float:
    return statistics.median(self.seconds)

  @property
  def low(self) -> float:
    """First quartile."""
    return statistics.quantiles(self.seconds, n=4, method='inclusive')[0]

  @property
  def high(self) -> float:
    """Third quartile."""
    return statistics.quantiles(self.seconds, n=4, method='inclusive')[2]


class Runner:
  """Holds live (params, state, third) for one program; ``steps`` per call."""

  def __init__(self, program: Program, params, opt, third, steps: int = 1):
    self.program = program
    self.params = params
    self.state = opt.init(params)
    self.third = third
    self.steps = steps

  def __call__(self):
    for _ in range(self.steps):
      self.params, self.state = self.program.compiled(
          self.params, self.state, self.third)
    jax.block_until_ready((self.params, self.state))


def time_interleaved(runners: dict[str, Callable[[], None]], warmup: int,
                     rounds: int) -> dict[str, Timing]:
  """Warm-up, then ``rounds`` rounds running each once in a rotated order."""
  for run in runners.values():
    for _ in range(warmup):
      run()
  names = list(runners)
  times = {n: [] for n in names}
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
      start = time.perf_counter()
      runners[n]()
      times[n].append(time.perf_counter() - start)
  return {n: Timing(t) for n, t in times.items()}


def concrete_params(model: models_lib.Model):
  return jax.jit(model.init)(jax.random.key(0))


def concrete_batch(model: models_lib.Model):
  return jax.jit(model.batch)(jax.random.key(1))


def fake_grads(params, seed: int = 2):
  """Gradient-like values: non-zero, about 1e-3 relative to the params."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [
      1e-3 * jax.random.normal(k, x.shape, x.dtype)
      for k, x in zip(keys, leaves)])


def time_programs(programs: dict[str, Program], opts, params, third,
                  warmup: int, rounds: int,
                  steps: int = 1) -> dict[str, dict[str, Any]]:
  """Times the donated programs interleaved, each on its own copy of params.

  With ``steps`` > 1 each timed sample runs that many consecutive steps and
  records their mean: ``steps=2`` times Alada's even and odd steps (which
  refit different factors) together, so that a median does not depend on
  which parity most rounds landed on.
  """
  runners = {n: Runner(prog, jax.tree.map(lambda x: x.copy(), params),
                       opts[n], third, steps) for n, prog in programs.items()}
  del params
  timings = time_interleaved(runners, warmup, rounds)
  timings = {n: Timing([s / steps for s in t.seconds])
             for n, t in timings.items()}
  return {n: {'memory': prog.memory, 'time': timings[n],
              'compile_s': prog.compile_s} for n, prog in programs.items()}


# -- what the compiled program does ------------------------------------------

def count_fusions(hlo_text: str) -> dict[str, int]:
  """Fusion instructions in a compiled program's HLO (``compiled.as_text()``).

  Each ``fusion`` instruction is one kernel that XLA emitted for a group of
  element-wise ops, reductions etc. (matmuls and other library calls are
  ``custom-call``s, not counted). An instruction reads
  ``%name = type fusion(operands), kind=..., calls=%fused_computation``, so its
  opcode is the text ``fusion(`` after a blank; operand names (``%fusion.3``)
  and ``calls=`` never match that.

  'entry' counts the fusions at the top level of the ENTRY computation: one
  kernel launch each per step. What ENTRY runs through other computations is
  counted apart, as 'entry_control': its ``conditional(`` (``lax.cond`` and
  ``lax.switch``: Alada picks which factor to refit with one), ``while(`` and
  ``call(`` instructions (on a GPU, XLA may move runs of fusions into command
  buffers, CUDA graphs, that ENTRY then calls). 'module' counts every fusion
  instruction of the module, those inside these computations included: all
  branches of a conditional count, though one runs per step.
  """
  entry = total = control = 0
  in_entry = False
  for line in hlo_text.splitlines():
    if line.startswith('ENTRY '):
      in_entry = True
      continue
    if in_entry and line.startswith('}'):
      in_entry = False
    if re.search(r'\sfusion\(', line):
      total += 1
      entry += in_entry
    elif in_entry and re.search(r'\s(conditional|while|call)\(', line):
      control += 1
  return {'entry': entry, 'entry_control': control, 'module': total}


def bytes_accessed(compiled) -> float | None:
  """XLA's ``cost_analysis()`` 'bytes accessed' of a compiled program."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  value = (cost or {}).get('bytes accessed')
  return None if value is None else float(value)
