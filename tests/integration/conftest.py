"""pytest fixtures for tests against a private Postfix (see postfix.py).

  test_base          fresh root-owned 0755 dir under /tmp (skips the test
                     when not root or Postfix/swaks/smtp-sink are missing)
  postfix_factory    postfix_factory(**kw) -> started postfix.Postfix
  postfix            postfix_factory() without milter
  msmilter_factory   msmilter_factory(settings=..., ...) -> postfix.MsMilter
  msmilter           msmilter_factory() with the default test settings
  stack              msmilter plus a Postfix whose smtpd uses it
"""

import pytest

import postfix as _pfmod
from postfix import *  # noqa: F401,F403  (fixtures and helpers)


def pytest_report_header(config):
    r = _pfmod.skip_reason()
    return "private Postfix: %s; msmilter binaries: %s" % (
        "unavailable (%s)" % r if r else "available", _pfmod.build_dir())


class Stack:
    def __init__(self, m, pf):
        self.m = m
        self.pf = pf


@pytest.fixture
def stack(msmilter_factory, postfix_factory):
    m = msmilter_factory()
    pf = postfix_factory(milter=m)
    return Stack(m, pf)
