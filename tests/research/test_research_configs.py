"""The examples' research configs, and the lab notes' example commands.

The examples offer the product's optimizers; ``configs/research.py`` also
offers the research variants of ``benchmarks.research.optimizers``. Every
example command in ``docs/research/`` must name a config that offers what it
asks for, so that the evidence stays reproducible.
"""

import glob
import importlib
import os

import jax.numpy as jnp
import optax
import pytest

from benchmarks.research import optimizers as research_optimizers
from examples.common import harness
from tests import doc_commands

RESEARCH_CONFIGS = ['examples.text_classification.configs.research',
                    'examples.causal_lm.configs.research']


def test_the_registry_names_the_research_variants():
  assert harness.RESEARCH_OPTIMIZERS == tuple(research_optimizers.OPTIMIZERS)
  offered = harness.optimizers(research=True)
  assert list(offered) == [*harness.OPTIMIZERS, *harness.RESEARCH_OPTIMIZERS]


@pytest.mark.parametrize('name', harness.RESEARCH_OPTIMIZERS)
def test_each_research_variant_builds_and_steps(name):
  tx = harness.make_optimizer(name, 1e-2, research=True)
  params = {'w': jnp.ones((4, 3)), 'b': jnp.zeros(3)}
  state = tx.init(params)
  grads = {'w': jnp.full((4, 3), 0.5), 'b': jnp.full(3, -0.5)}
  updates, _ = tx.update(grads, state, params)
  params = optax.apply_updates(params, updates)
  assert all(bool(jnp.isfinite(x).all()) for x in params.values())


@pytest.mark.parametrize('config_module', RESEARCH_CONFIGS)
def test_research_configs_offer_every_variant_on_lr_sweeps_grid(config_module):
  config = importlib.import_module(config_module).get_config()
  sweep = importlib.import_module(
      config_module.replace('.research', '.lr_sweep')).get_config()
  assert config.research
  assert set(config.learning_rates) == (
      set(harness.OPTIMIZERS) | set(harness.RESEARCH_OPTIMIZERS))
  for name in harness.RESEARCH_OPTIMIZERS:
    assert tuple(config.learning_rates[name]) == tuple(sweep.learning_rates.alada)
  # The product's part is lr_sweep.py's, so a command that moved from it to
  # research.py runs the same trials.
  for name in harness.OPTIMIZERS:
    assert config.learning_rates[name] == sweep.learning_rates[name]
  config.optimizers = tuple(harness.RESEARCH_OPTIMIZERS)
  grid, _ = harness.learning_rate_grid(config)
  assert set(grid) == set(harness.RESEARCH_OPTIMIZERS)


_LAB_COMMANDS = [c for page in sorted(glob.glob(os.path.join(
    doc_commands.REPO, 'docs', 'research', '*.md')))
                 for c in doc_commands.commands(
                     os.path.relpath(page, doc_commands.REPO))]


def test_the_lab_notes_quote_example_commands():
  assert len(_LAB_COMMANDS) > 20


@pytest.mark.parametrize('command', _LAB_COMMANDS, ids=lambda c: c.where)
def test_lab_commands_ask_only_for_what_their_config_offers(command):
  assert os.path.isfile(os.path.join(doc_commands.REPO, command.config)), command
  config = importlib.import_module(command.config_module()).get_config()
  names = command.optimizers or tuple(config.optimizers)
  harness.check_optimizers(names, config.get('research', False))
  for name in (*names, *command.learning_rates):
    assert name in config.learning_rates, (command, name)
