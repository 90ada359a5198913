"""Sentence polarity data: movie-review snippets with human sentiment ratings.

The data ships inside the source distribution of the PyPI package
``vaderSentiment`` 3.3.2 (MIT; the wheel does not carry it):
``additional_resources/hutto_ICWSM_2014.tar.gz`` holds
``movieReviewSnippets_GroundTruth.txt``, 10,605 sentences from Rotten Tomatoes
reviews (the sentence-polarity data of Pang & Lee, 2005, behind SST), each with
the mean of 20 human ratings on [-4, 4] (Hutto & Gilbert, ICWSM 2014). The
label is the sign of that mean (1: positive); the 37 sentences rated exactly 0
are dropped, which leaves 10,568.

The sdist is fetched from PyPI with pip (a package registry, not a dataset
hub) into a cache folder once, checked against its SHA-256, and read from there
offline ever after::

  python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 \
      -d ~/.cache/alada_optax/examples

or ``python -m examples.common.movie_snippets``, which runs that command and
prints the data's size. ``$ALADA_EXAMPLES_DATA`` overrides the
folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile

import numpy as np

SDIST = 'vaderSentiment-3.3.2.tar.gz'
SDIST_SHA256 = '5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9'
PIP_DOWNLOAD = [
    'pip', 'download', '--no-deps', '--no-binary', ':all:',
    'vaderSentiment==3.3.2',
]
_INNER_TAR = 'vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz'
_MOVIES = 'hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt'


def default_cache_dir() -> str:
  return os.environ.get('ALADA_EXAMPLES_DATA') or os.path.join(
      os.path.expanduser('~'), '.cache', 'alada_optax', 'examples'
  )


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def locate_sdist(cache_dir: str | None = None, download: bool = False) -> str:
  """The path of the checked vaderSentiment sdist, pip-downloading it if asked.

  Args:
    cache_dir: where the sdist is (or goes); default :func:`default_cache_dir`.
    download: if the sdist is missing, fetch it with ``pip download``.

  Raises:
    FileNotFoundError: it is missing and ``download`` is False (the message
      gives the command that fetches it).
    ValueError: the file's SHA-256 is not the expected one.
  """
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, SDIST)
  command = [sys.executable, '-m', *PIP_DOWNLOAD, '-d', cache_dir]
  if not os.path.isfile(path):
    if not download:
      raise FileNotFoundError(
          f'{path} is missing. The sentence-polarity data ships in the'
          f' vaderSentiment sdist; fetch it with: {" ".join(command[1:])}'
      )
    os.makedirs(cache_dir, exist_ok=True)
    subprocess.run(command, check=True)
  if (got := _sha256(path)) != SDIST_SHA256:
    raise ValueError(f'{path} has SHA-256 {got}, expected {SDIST_SHA256}')
  return path


def read_movie_snippets(sdist_path: str) -> tuple[list[str], np.ndarray]:
  """Sentences and their 0/1 polarity labels, in the file's order."""
  with tarfile.open(sdist_path, 'r:gz') as outer:
    inner_bytes = outer.extractfile(_INNER_TAR).read()
  with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode='r:gz') as inner:
    raw = inner.extractfile(_MOVIES).read().decode('utf-8')
  texts, labels = [], []
  for line in raw.splitlines():
    if not line.strip():
      continue
    _, score, text = line.split('\t', 2)
    score = float(score)
    if score == 0.0:
      continue
    texts.append(text.strip())
    labels.append(int(score > 0))
  return texts, np.asarray(labels, np.int32)


if __name__ == '__main__':
  texts, labels = read_movie_snippets(locate_sdist(download=True))
  print(f'{len(texts)} sentences, {labels.mean():.3f} positive, from {default_cache_dir()}')
