"""Errors a user can fix (bad config, missing or bad data); main.py prints them without a
traceback. Anything else is a bug and keeps its traceback."""
from __future__ import annotations



class ConfigError(ValueError):
  """A config that cannot run; the message says which key and why."""


class DataError(ValueError):
  """Missing, unprepared or unusable data; the message names the files and the fix."""


USER_ERRORS = (ConfigError, DataError, FloatingPointError)
