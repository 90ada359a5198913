"""tests/ci.py: how the CI environment variable is read, skip or fail."""

import pytest

from tests import ci


@pytest.mark.parametrize('value, want', [
    ('1', True), ('true', True), ('TRUE', True), ('Yes', True),
    (' true\n', True), ('', False), ('0', False), ('false', False),
    ('no', False), ('on', False),
])
def test_in_ci_reads_the_variable(monkeypatch, value, want):
  monkeypatch.setenv('CI', value)
  assert ci.in_ci() is want


def test_in_ci_without_the_variable(monkeypatch):
  monkeypatch.delenv('CI', raising=False)
  assert not ci.in_ci()


def test_skip_or_fail(monkeypatch):
  monkeypatch.setenv('CI', 'false')
  with pytest.raises(pytest.skip.Exception, match='no corpus'):
    ci.skip_or_fail('no corpus')
  monkeypatch.setenv('CI', 'true')
  with pytest.raises(pytest.fail.Exception, match='CI must install.*no corpus'):
    ci.skip_or_fail('no corpus')
