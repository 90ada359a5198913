"""Alada: Adam's first moment with a rank-one, alternately refitted second moment.

Reference: Algorithm 2 and Section IV of "Alada: Alternating Adaptation of
Momentum Method for Memory-Efficient Matrix Optimization".
"""

import functools
from typing import Any, NamedTuple, Optional, Union
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alada_optax import _alias
from alada_optax import _leafwise
from alada_optax import _layout
from alada_optax import _validation
from alada_optax import matricize


class ScaleByAladaState(NamedTuple):
  """State of :func:`scale_by_alada`.

  Every field but ``count`` is a pytree with the structure of the params (None
  leaves and :class:`optax.MaskedNode` kept). For a leaf viewed as a batch of
  ``m x n`` matrices (see :mod:`alada_optax.matricize`; no batch for the
  default eq. (12) view):

  Attributes:
    count: number of updates applied, int32 scalar.
    mu: first moment ``M``, shaped like the leaf, in ``mu_dtype``.
    p: row factor, shape ``batch_shape + (m,)``.
    q: column factor, shape ``batch_shape + (n,)``.
    v0: ``||G_0||^2 / (m n)`` of the leaf's first non-zero gradient, shape
      ``batch_shape``; 0 while the leaf has only seen zero gradients.
    t0: the ``count`` at which the leaf's first non-zero gradient arrived,
      int32, shape ``batch_shape``. The leaf's step in Algorithm 2 is
      ``t = count - t0``; its parity picks the factor to refit.
  """

  count: jax.Array
  mu: optax.Updates
  p: optax.Updates
  q: optax.Updates
  v0: optax.Updates
  t0: optax.Updates


_NAME = 'scale_by_alada'
# What the rank-one factors fit: M~^2 (Algorithm 2), or G^2 (Section III).
SECOND_MOMENTS = ('momentum', 'gradient')

# mu like the param, p and q along its row and column axes, v0 and t0 along
# its batch axes (see alada_optax.sharding).
_FIELDS = _leafwise.declare(ScaleByAladaState, {
    'mu': _leafwise.Field(_layout.like_param, _leafwise.param_shape,
                          _leafwise.MOMENT),
    'p': _leafwise.Field(_layout.rows,
                         lambda shape, plan: plan.row_factor_shape),
    'q': _leafwise.Field(_layout.cols,
                         lambda shape, plan: plan.col_factor_shape),
    'v0': _leafwise.Field(_layout.batch, lambda shape, plan: plan.batch_shape),
    't0': _leafwise.Field(_layout.batch, lambda shape, plan: plan.batch_shape,
                          jnp.int32),
}, strict=True)


class _Clock(NamedTuple):
  """One leaf's per-step scalars (one per matrix), shared by refit and step."""

  plan: matricize.MatrixPlan
  dtype: jnp.dtype  # of the arithmetic, p, q and v0
  b1: jax.Array
  b2: jax.Array
  eps: jax.Array
  big: jax.Array  # where the factors and v0 saturate
  started: jax.Array  # the matrix has seen a non-zero gradient before now
  even: jax.Array  # Algorithm 2's t is even: refit p (else q)
  bc1: jax.Array  # 1 - b1^(t+1)
  b2_pow: jax.Array  # b2^(t+1)
  # The factors fit V = (T / v_scale)^2, T the target the refit reads: M with
  # v_scale = bc1 (Algorithm 2), or G with v_scale = 1 (second_moment=
  # 'gradient'). At a matrix's start T = v0_scale G_0: 1 - b1, or 1.
  v_scale: jax.Array
  v0_scale: jax.Array


def _unit(factor: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``factor / max|factor|``, the scale, and the unit vector's squared norm.

  The least squares ``V f / (||f||^2 + eps)`` is computed with ``f / max|f|``
  so that neither ``V f`` nor ``||f||^2`` overflows when a factor carries a
  large scale (the same value in exact arithmetic).
  """
  scale = jnp.max(jnp.abs(factor), axis=-1)
  scale = jnp.where(scale > 0, scale, 1)
  u = factor / scale[..., None]
  return u, scale, jnp.sum(u * u, axis=-1)


def _separate_reads(x: jax.Array, dtype) -> Callable[[], jax.Array]:
  """A reader of ``x`` as ``dtype`` whose every call is a value of its own.

  Each full-size reduction must convert (and square) M inside its own kernel.
  Two reductions reading one ``M.astype(float32)`` would share it, and XLA
  would store it: a full-size temporary when M is bfloat16. A chain of
  optimization barriers (each call behind the previous one) gives every
  reader a copy of M's value that the compiler cannot merge. Guarded by
  ``tests/test_memory.py::test_update_alone_has_no_full_size_temporaries``
  (its bf16 case fails without the chain).
  """
  last = None

  def read():
    nonlocal last
    last = x if last is None else jax.lax.optimization_barrier(last)
    return last.astype(dtype)

  return read


def _refit_factor(clock: _Clock, reduce, expand, unit, factor, m):
  """``b2 f' + (1 - b2) V f / (||f||^2 + eps)``, as one reduction.

  ``f`` is the other factor, given as ``unit`` (from :func:`_unit`), ``f'``
  the refitted one, ``m`` a reader of the target T (M, or G), ``reduce`` the
  sum over ``f``'s axis and ``expand`` lays ``f`` along it. V = (T / v_scale)^2
  (``(M / bc1)^2`` in Algorithm 2) and every scalar of the
  least squares are folded into the reduction's weights
  ``f / (||f||^2 + eps)``, so that the reduction's only epilogue is the add
  of ``b2 f'``: XLA's CPU row reductions run ~6x slower when their result is
  multiplied, clipped or selected in the same kernel, and an add rides
  along (so the saturation is applied after the switch). The weights divide
  ``f`` by its scale inside the reduction, which keeps ``M^2 f / ||f||^2`` at
  the factors' own magnitude, representable where ``M^2`` is not
  (``|M| > 1.8e19`` in float32) or underflows; they are capped at ``big``:
  never ``inf * 0``.
  """
  u, scale, norm2 = unit
  k = (1 - clock.b2) / jnp.square(clock.v_scale) / (
      norm2 + clock.eps / scale / scale)
  w = jnp.minimum(u / scale[..., None] * k[..., None], clock.big)
  mm = m()
  return matricize.match_sharding(
      reduce(mm * expand(w) * mm) + clock.b2 * factor, factor)


def _refit(clock: _Clock, units, target, p, q, v0, *, rows: bool, cols: bool,
           init: bool):
  """Lines 8-19 of Algorithm 2: a branch of the parity switch.

  Refits p (``rows``) and/or q (``cols``) for the matrices whose parity asks
  for it, against ``(target / clock.v_scale)^2``; with ``init``, matrices
  starting now first set v0 and p0, q0. ``units`` are :func:`_unit` of p and
  q. Returns the new (p, q, v0, b2^(t+1) v0), before saturation.
  """
  plan, started, even = clock.plan, clock.started, clock.even
  m = _separate_reads(target, clock.dtype)
  unit_p, unit_q = units
  if init:
    # Lines 8-12 where a matrix starts now: v0 = ||G_0||^2 / mn, read off
    # the target: M_1 = (1 - b1) G_0 (M is 0 before a matrix starts), or G_0;
    # and
    # p0 = sqrt(v0) 1_m, q0 = sqrt(v0) 1_n: unit weights of exactly 1 (all 0
    # if ||G_0||^2 underflows to 0).
    like = matricize.match_sharding  # explicit mesh axes: equal shardings
    mm = m()
    v0 = jnp.where(started, v0, like(plan.sum_per_matrix(mm * mm), v0)
                   / (jnp.square(clock.v0_scale) * (plan.m * plan.n)))
    v0 = jnp.minimum(v0, clock.big)  # saturates, as the factors do
    root, nonzero = jnp.sqrt(v0), v0 > 0
    p = jnp.where(started[..., None], p, like(root[..., None], p))
    q = jnp.where(started[..., None], q, like(root[..., None], q))
    new = ~started[..., None]

    def start(unit, size):
      u, scale, norm2 = unit
      return (
          jnp.where(new, like(jnp.where(nonzero[..., None], 1., 0.), u), u),
          jnp.where(started, scale, like(jnp.where(nonzero, root, 1), scale)),
          jnp.where(started, norm2, like(jnp.where(nonzero, size, 0), norm2)))

    unit_p, unit_q = start(unit_p, plan.m), start(unit_q, plan.n)

  p_new, q_new = p, q
  if rows:  # Lines 13-15: p <- b2 p + (1 - b2) V q / (||q||^2 + eps).
    p_new = _refit_factor(clock, plan.sum_over_cols, plan.expand_cols, unit_q,
                          p, m)
    if cols:
      p_new = jnp.where(even[..., None], p_new, p)
  if cols:  # Lines 16-18: q <- b2 q + (1 - b2) V^T p / (||p||^2 + eps).
    q_new = _refit_factor(clock, plan.sum_over_rows, plan.expand_rows, unit_p,
                          q, m)
    if rows:
      q_new = jnp.where(even[..., None], q, q_new)
  return p_new, q_new, v0, clock.b2_pow * v0


@functools.partial(jax.jit, static_argnames=('plan', 'second_moment'))
def _alada_leaf(
    g: jax.Array,
    mu: jax.Array,
    p: jax.Array,
    q: jax.Array,
    v0: jax.Array,
    t0: jax.Array,
    count: jax.Array,
    plan: matricize.MatrixPlan,
    b1: jax.Array,
    b2: jax.Array,
    eps: jax.Array,
    step_bound: Optional[jax.Array],
    second_moment: str = 'momentum',
) -> tuple[jax.Array, ...]:
  """One step of Algorithm 2 for one leaf (a batch of matrices).

  Returns the descent direction M~ / sqrt(max(U~, 0) + eps), clipped to
  [-step_bound, step_bound] unless ``step_bound`` is None, and the new
  (mu, p, q, v0, t0).

  Memory and time: the only full-size value made here is the new ``mu`` (the
  state's output: written over the old one when the state is donated), and G
  is read by the fold into M (and, with ``second_moment='gradient'``, by the
  refit instead of M). The work on full-size arrays is three passes: fold G
  into M; reduce M^2 (or G^2) against q or p (in a switch, so that only the
  refit the parity needs runs); the elementwise step. M~ = M / bc1 is never
  formed: bc1 is applied to the reductions' weights and inside the step.
  """
  dtype = _validation.factor_dtype(g.dtype)
  b1, b2, eps = (jnp.asarray(x, dtype) for x in (b1, b2, eps))

  # The leaf's own clock. A leaf that has only seen zero gradients (v0 == 0)
  # has not started: its Algorithm 2 starts at its first non-zero gradient.
  started = v0 > 0
  t0 = jnp.where(started, t0, count)
  t = count - t0  # Algorithm 2's t: 0 at the leaf's first non-zero gradient.
  tp1 = (t + 1).astype(dtype)
  bc1, b2_pow = 1 - b1**tp1, b2**tp1
  if second_moment == 'gradient':  # the paper's Section III: V = G^2
    v_scale = v0_scale = jnp.ones((), dtype)
  else:  # Algorithm 2, line 7: V = M~^2 = (M / bc1)^2
    v_scale, v0_scale = bc1, 1 - b1
  clock = _Clock(
      plan=plan, dtype=dtype, b1=b1, b2=b2, eps=eps,
      # 2^126 in float32, whose reciprocal is still a normal number (XLA
      # divides by multiplying by the reciprocal, and flushes subnormals).
      big=1 / jnp.finfo(dtype).smallest_normal,
      started=started, even=t % 2 == 0, bc1=bc1, b2_pow=b2_pow,
      v_scale=v_scale, v0_scale=v0_scale)

  # Even matrices refit p, odd ones q; matrices starting now (all even) also
  # set v0. Only the branch the parities need runs.
  even = clock.even
  any_even, any_odd = jnp.any(even), jnp.any(~even)
  which = jnp.where(any_even & any_odd, 3,
                    jnp.where(jnp.any(~started), 2, jnp.where(any_even, 0, 1)))
  # The units are made outside the switch, although each refit reads one of
  # them: a sum of their own in a branch would share its zero constant with
  # the init of the branch's full-size row reduction, which XLA's CPU backend
  # then runs ~3x slower (a fused reduction whose init is not an inlined
  # constant; measured on the 50257 x 768 embedding, 80 ms against 26 ms).
  refit = functools.partial(_refit, clock, (_unit(p), _unit(q)))
  branches = [
      functools.partial(refit, rows=True, cols=False, init=False),
      functools.partial(refit, rows=False, cols=True, init=False),
      functools.partial(refit, rows=True, cols=False, init=True),
      functools.partial(refit, rows=True, cols=True, init=True),
  ]

  # Lines 5-6: M_{t+1} = b1 M_t + (1 - b1) G_t, stored in mu's dtype; what
  # follows reads M_{t+1} as stored.
  mu = (b1 * mu.astype(dtype) + (1 - b1) * g.astype(dtype)).astype(mu.dtype)
  # The refit reads M_{t+1} (Algorithm 2), or G (second_moment='gradient'):
  # then G lives until the refit, and in a train step XLA's CPU scheduler
  # may run that refit after the next layer's backward, keeping two
  # gradients alive (tests/test_memory.py measures what it costs).
  p, q, v0, b2_pow_v0 = jax.lax.switch(
      which, branches, g if second_moment == 'gradient' else mu, p, q, v0)
  # Factors past the float range saturate near its end: U~ stays a number
  # (inf - inf would be NaN) and the step goes to 0 where p q^T overflows, as
  # Adam's does where its second moment overflows. (Outside the switch: see
  # _refit_factor.) The full-size step below reads the vectors finished (its
  # rounding does not depend on how the compiler fuses it: U~ can cancel).
  p, q = jnp.minimum(p, clock.big), jnp.minimum(q, clock.big)

  # Lines 20-22: U~ = (p q^T - b2^{t+1} v0) / (1 - b2^{t+1}), clamped at 0
  # (it is >= 0 in exact arithmetic), and the step M~ / sqrt(U~ + eps).
  expand = plan.expand_batch
  u = plan.expand_rows(p) * plan.expand_cols(q)
  u_hat = (u - expand(b2_pow_v0)) / expand(1 - b2_pow)
  m_hat = mu.astype(dtype) / expand(bc1)
  direction = m_hat / jnp.sqrt(jnp.maximum(u_hat, 0) + eps)
  # The safeguard: no entry steps further than step_bound (1: the step of an
  # exact fit U~ = M~^2), i.e. U~ is never below M~^2 / step_bound^2. Part of
  # the same elementwise pass; the state is not touched.
  if step_bound is not None:
    bound = jnp.asarray(step_bound, dtype)
    direction = jnp.clip(direction, -bound, bound)
  return direction, mu, p, q, v0, t0


def _alada_kernel(g, state, plan, count, hyperparams, second_moment):
  """:func:`_alada_leaf` in the kernel signature of :mod:`_leafwise`."""
  direction, mu, p, q, v0, t0 = _alada_leaf(
      g, state.mu, state.p, state.q, state.v0, state.t0, count, plan,
      *hyperparams, second_moment=second_moment)
  return direction, state._replace(mu=mu, p=p, q=q, v0=v0, t0=t0)


def scale_by_alada(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    step_bound: Optional[jax.typing.ArrayLike] = 1.0,
    *,
    second_moment: str = 'momentum',
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to Alada (Algorithm 2 of the paper).

  See :func:`alada` for the math and the readings of the paper it makes.

  Args:
    b1: Decay rate of the first moment ``M``.
    b2: Decay rate of the rank-one second moment ``p q^T``. The paper
      recommends ``b1 = b2 = 0.9`` to match Adam with ``(0.9, 0.999)``.
    eps: Added to ``||q||^2`` and ``||p||^2`` in the refits and to ``U~``
      under the square root.
    mu_dtype: Storage dtype of the first moment; if ``None``, the params'.
      The arithmetic, ``p``, ``q`` and ``v0`` use float32 (or the params'
      dtype if wider). The refit and the step read ``M`` as stored (rounded
      to ``mu_dtype``): no full-size float32 copy of ``M`` is made.
    step_bound: The largest per-entry step ``|M~ / sqrt(U~ + eps)|``; steps
      beyond it are clipped to it (the default's safeguard, see
      :func:`alada`). ``None`` gives the paper's Algorithm 2 exactly.
    second_moment: What the rank-one factors fit: ``'momentum'``, the squared
      bias-corrected momentum ``M~^2`` (Algorithm 2, the default), or
      ``'gradient'``, the squared gradient ``G^2`` (the paper's Section III
      and Algorithm 1; see :func:`alada`).
    dimension_numbers: How each leaf is viewed as a matrix:
      ``None`` (eq. (12) of the paper for every leaf), a
      :class:`MatrixDimensionNumbers` for every leaf, a pytree (prefix of the
      params) of them with ``None`` for eq. (12), or a callable returning such
      a pytree from the params.

  Returns:
    A :class:`optax.GradientTransformation`.
  """
  _validation.check_hyperparams(
      _NAME, b1=(b1, _validation.DECAY), b2=(b2, _validation.DECAY),
      eps=(eps, _validation.NON_NEGATIVE))
  if step_bound is not None:
    _validation.check_hyperparams(
        _NAME, step_bound=(step_bound, _validation.POSITIVE))
  mu_dtype = _validation.check_mu_dtype(_NAME, mu_dtype)
  if second_moment not in SECOND_MOMENTS:
    raise ValueError(
        f'{_NAME}: second_moment must be one of {SECOND_MOMENTS}, got '
        f'{second_moment!r}.')

  return _leafwise.transformation(
      _NAME, _FIELDS,
      functools.partial(_alada_kernel, second_moment=second_moment),
      (b1, b2, eps, step_bound),
      dimension_numbers=dimension_numbers, mu_dtype=mu_dtype)


def alada(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    step_bound: Optional[jax.typing.ArrayLike] = 1.0,
    *,
    second_moment: str = 'momentum',
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Alada: alternating adaptation of momentum, a memory-efficient Adam.

  Alada keeps Adam's first moment :math:`M` but replaces the second moment by
  a rank-one product :math:`p q^\top` with :math:`p \in \mathbb{R}^m`,
  :math:`q \in \mathbb{R}^n`, refitted by alternating least squares against
  the squared bias-corrected momentum: optimizer state per ``m x n`` matrix is
  :math:`mn + m + n` floats instead of Adam's :math:`2mn`.

  Let :math:`\eta_t` be the learning rate and :math:`\beta_1, \beta_2,
  \varepsilon` the arguments ``b1``, ``b2``, ``eps``. For a leaf viewed as an
  ``m x n`` matrix (eq. (12) below), with :math:`t = 0, 1, \dots` counted from
  the leaf's first non-zero gradient :math:`G_0`, :math:`M_0 = 0`,
  :math:`v_0 = \|G_0\|^2 / mn`, :math:`p_0 = \sqrt{v_0} 1_m`,
  :math:`q_0 = \sqrt{v_0} 1_n`:

  .. math::

    \begin{align*}
      M_{t+1} &\leftarrow \beta_1 M_t + (1 - \beta_1) G_t,
        \qquad \tilde M_{t+1} \leftarrow M_{t+1} / (1 - \beta_1^{t+1}),
        \qquad V_{t+1} \leftarrow \tilde M_{t+1}^2 \\
      p_{t+1} &\leftarrow \beta_2 p_t + (1 - \beta_2)
        \frac{V_{t+1} q_t}{\|q_t\|^2 + \varepsilon},
        \quad q_{t+1} \leftarrow q_t \qquad (t \text{ even}) \\
      q_{t+1} &\leftarrow \beta_2 q_t + (1 - \beta_2)
        \frac{V_{t+1}^\top p_t}{\|p_t\|^2 + \varepsilon},
        \quad p_{t+1} \leftarrow p_t \qquad (t \text{ odd}) \\
      \tilde U_{t+1} &\leftarrow \frac{p_{t+1} q_{t+1}^\top
        - \beta_2^{t+1} v_0}{1 - \beta_2^{t+1}} \\
      W_{t+1} &\leftarrow \operatorname{clip}\left( \frac{\tilde M_{t+1}}
        {\sqrt{\max(\tilde U_{t+1}, 0) + \varepsilon}}, -c, c \right),
        \qquad u_t \leftarrow -\eta_t \left( W_{t+1} + \lambda X_t \right)
    \end{align*}

  with :math:`c` the argument ``step_bound`` (1 by default; no clipping with
  ``step_bound=None``, the paper's Algorithm 2).

  **The default bounds each entry's step (``step_bound=1``); the paper's
  Algorithm 2 is** ``step_bound=None``. The rank-one fit can underestimate
  :math:`V = \tilde M^2` badly on some entries, and then Algorithm 2 steps
  them by up to :math:`\tilde M / \sqrt{\varepsilon}`, i.e.
  :math:`10^8 \tilde M`. It happens where a factor is stale: on odd steps
  only :math:`q` is refitted, so a row that was silent for a while (a rare
  token's embedding row, a class absent from recent batches) has its
  :math:`p_i` decayed towards 0, and when it gets a gradient again its
  entries step by millions of times the learning rate. It also happens
  wherever :math:`\tilde M^2` is far from rank one (on optax's 2 x 2
  ``matrix_parabola`` at lr 3e-3 the paper's steps reach 4e4 times the
  learning rate). An exact fit (:math:`\tilde U = \tilde M^2`) steps every
  entry by exactly :math:`\pm 1`; the bound keeps every entry at or below
  that, i.e. it uses :math:`\max(\tilde U, \tilde M^2)` in place of
  :math:`\tilde U`: the fitted second moment may overestimate :math:`V`
  (smaller steps, as in Algorithm 2) but never underestimate it. Where
  :math:`|W| \le 1` the step is Algorithm 2's bit for bit, and the state
  (``mu``, ``p``, ``q``) is never changed by the bound.

  This changes the algorithm as well as guarding it: in a dense layer the fit
  sits near the local level of :math:`\tilde M^2`, and the entries above it
  have :math:`|W| > 1`. Measured over whole runs at each task's best
  learning rate, the bound sets the step of 10.6% of the entries per step on
  the causal LM example, 19% on the benchmark LM and 28% on the MiniLM
  fine-tune. It is kept because it holds Alada up above its best learning
  rate (the paper's algorithm reached a perplexity of 2.5e7 where the bound
  gave 472), at a cost below it (smaller steps train more slowly); looser
  bounds (2, :math:`1/\sqrt{1 - \beta_2}`) rescued less. At about 10 times
  its best learning rate Alada collapses, as Adam mostly does at 10 times
  its own on the examples measured (over six and nine seeds; on the causal
  LM 0.13 nats deeper than Adam's, on the mean), and as Adam dividing by an
  exact rank-one fit of its own second moment does; below its best the
  bound's smaller steps train more slowly. The README and
  ``docs/safeguard.md`` have the figures.

  **Learning rates.** Alada's preconditioner fits :math:`\tilde M^2`, the
  square of the *mean* gradient, where Adam's :math:`v` estimates the mean of
  :math:`g^2`; with noisy gradients Alada's typical per-entry step is
  larger than Adam's at the same learning rate (1.7x to 2.4x measured).
  Start from **half of Adam's best learning rate** (Alada's best was 0.55x
  Adam's on the three tasks measured; a third with ``step_bound=None``), and
  do not go above Adam's.

  **Fitting the gradient instead:** ``second_moment='gradient'`` fits
  :math:`p q^\top` to :math:`G_t^2` (line 7 becomes :math:`V_{t+1} = G_t^2`:
  the paper's Section III and Algorithm 1, with Section IV's first moment and
  bias corrections kept). Section IV fits :math:`\tilde M^2` so that PyTorch
  can free the gradient early; a JAX step has the gradient at hand and frees
  it after the update, so here it costs no state and no extra pass (the
  refit reads G in place of M). Its steps are Adam-sized (mean
  :math:`|W|` 0.15-0.21 at the best learning rates measured, the bound
  acting on under 1% of entries), and its best learning rates were Adam's,
  where it was within noise of Adam's best on two of the three tasks
  measured (on the causal LM 0.7% behind on three seeds' mean, as the
  default is). Not the default: it changes
  Algorithm 2, and a layer's refit can keep its gradient alive during the
  next layer's backward (on a 4-layer MLP the compiled train step peaks
  1.10x SGD with momentum instead of 0.92x; on GPT-2-small the peaks are
  equal). ``docs/safeguard.md`` has the measurements.

  Readings of the paper made explicit:

  * The step uses the bias-corrected :math:`\tilde M_{t+1}`, as Section IV-B's
    prose and Section IV-C's alignment with Adam say (Algorithm 2's line 22
    prints :math:`M_{t+1}`).
  * A tensor of order :math:`\tau` is viewed as an ``m x n`` matrix by eq. (12):
    the dimension list is split where the two products are closest (the first
    split on ties); vectors are ``1 x n``, scalars ``1 x 1``. The view is never
    materialised: ``p`` and ``q`` are broadcast into the tensor's layout and
    the tensor is reduced over its row or column axes (no copy, and no
    resharding of sharded tensors). ``dimension_numbers`` overrides the view,
    e.g. to factor stacked layers separately.
  * :math:`\tilde U` is :math:`\ge 0` in exact arithmetic (each step grows
    :math:`p q^\top` by at least the factor :math:`\beta_2` it decays
    :math:`\beta_2^{t+1} v_0` by); it is clamped at 0 so that rounding cannot
    produce a NaN.
  * Arithmetic, ``p``, ``q`` and ``v0`` are float32 (or wider if the params
    are); updates have the gradients' dtype promoted with the params' (as in
    :func:`optax.adam`; the gradients' alone when ``update`` gets no params);
    ``mu_dtype`` sets ``M``'s storage, and the refit and the step read
    :math:`M_{t+1}` as stored.
  * **Range.** The refits divide the weights by the factor's scale inside
    their reductions, so that :math:`M^2` is never formed on its own: the
    state stays finite for gradients up to about ``1e19`` in float32 (where
    :math:`G^2` is still a float32, as for :func:`optax.adam`'s state).
    Beyond, ``p``, ``q`` and ``v0`` saturate at ``2^126`` and the update is
    finite (0 where :math:`p q^\top` overflows, as Adam's is 0 where its
    second moment overflows).
  * ``update`` needs ``params`` only for weight decay: with ``weight_decay``
    0 (the default) it may be called without them. Zero-size leaves get
    zero-size updates.

  Beyond the paper: Algorithm 2 taken literally breaks when a leaf's first
  gradient is exactly zero (LoRA's ``A`` while ``B = 0``, a zero-initialised
  head, a layer unfrozen later): :math:`v_0 = 0` makes ``p = q = 0`` forever
  and later steps are :math:`M / \sqrt{\varepsilon}`, millions of times
  Adam's. Here a zero gradient carries no information about the leaf's scale,
  so each leaf's Algorithm 2 starts at its first non-zero gradient: until then
  its update is 0 and its state stays at 0, and from then on it runs
  Algorithm 2 with its own step count :math:`t` (``count - t0`` in the state),
  bias corrections included. When the first gradient is non-zero this is
  Algorithm 2 exactly. With batch axes each matrix of the batch has its own
  start. A gradient whose squares underflow (in float32, entries below about
  ``1e-18``: their squares are below the smallest normal float) cannot start
  the leaf either: its factors stay 0, but ``M`` accumulates it and the
  update is :math:`M / ((1 - \beta_1) \sqrt{\varepsilon})`, at most ten
  times the gradient's size times ``1e8`` (``1e-9`` for entries of
  ``1e-18``; Adam's second moment underflows there too, and its update is
  :math:`\hat m / \varepsilon`). The first gradient large enough starts
  the leaf.

  Args:
    learning_rate: A global scaling factor, either fixed or a schedule, see
      :func:`optax.scale_by_learning_rate`.
    b1: Decay rate of the first moment, in ``[0, 1)``.
    b2: Decay rate of the second moment factors, in ``[0, 1)`` (1 would
      divide ``U~`` by 0). The paper recommends ``b1 = b2 = 0.9``.
    eps: Regulariser of the refits and of the preconditioner, ``>= 0`` (the
      paper's :math:`\epsilon = 10^{-16}`).
    weight_decay: Strength of the decoupled weight decay :math:`\lambda`
      (multiplied by the learning rate, as in :func:`optax.adamw`).
    mask: A tree with the structure of (or a prefix of) the params, or a
      callable returning one, with ``True`` for the leaves weight decay
      applies to.
    mu_dtype: Optional storage dtype of the first moment, a floating-point
      dtype (e.g. ``jnp.bfloat16``); if ``None``, the params' dtype.
    step_bound: The largest per-entry step before the learning rate, ``> 0``
      (1 by default); ``None`` gives the paper's Algorithm 2 exactly.
    second_moment: What ``p q^T`` fits: ``'momentum'`` (:math:`\tilde M^2`,
      Algorithm 2, the default) or ``'gradient'`` (:math:`G^2`, the paper's
      Section III; Adam's learning rates, see above).
    dimension_numbers: How leaves are viewed as matrices; see
      :func:`scale_by_alada`.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jax, optax
    >>> from alada_optax import alada
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)
    >>> solver = alada(learning_rate=0.1)
    >>> params = jnp.zeros((4, 3))
    >>> opt_state = solver.init(params)
    >>> for _ in range(200):
    ...   grads = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grads, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(f(params) < 0.05)  # from 12.0 at the start
    True

  References:
    Alada: Alternating Adaptation of Momentum Method for Memory-Efficient
    Matrix Optimization (Algorithm 2, Section IV).
  """
  return optax.chain(
      scale_by_alada(
          b1=b1,
          b2=b2,
          eps=eps,
          mu_dtype=mu_dtype,
          step_bound=step_bound,
          second_moment=second_moment,
          dimension_numbers=dimension_numbers,
      ),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
