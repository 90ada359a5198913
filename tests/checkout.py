"""What the tests that run the repository's commands in a subprocess share."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command_env() -> dict:
  """The environment of a command run from outside the checkout."""
  env = dict(os.environ)
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env.setdefault('OPENBLAS_NUM_THREADS', '1')
  return env


def git_status():
  """`git status --porcelain` of the checkout, or None outside a git checkout."""
  try:
    out = subprocess.run(['git', 'status', '--porcelain'], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout if out.returncode == 0 else None
