"""Fixtures for the miltertest scripts: msmilter alone, no Postfix."""

from postfix import *  # noqa: F401,F403
