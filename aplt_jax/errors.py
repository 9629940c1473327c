"""Errors a user can fix (bad config, missing or bad data); main.py prints them without a
traceback. Anything else is a bug and keeps its traceback."""
from __future__ import annotations

import sys
from typing import Any, Callable


class ConfigError(ValueError):
  """A config that cannot run; the message says which key and why."""


class DataError(ValueError):
  """Missing, unprepared or unusable data; the message names the files and the fix."""


USER_ERRORS = (ConfigError, DataError, FloatingPointError)


def run_cli(body: Callable[..., Any], *args: Any) -> int:
  """Every entry point's wrapper: calls `body(*args)` and returns its exit status (0 when it
  returns no int). A user error is printed as its one paragraph, without a traceback, and gives
  status 2; any other exception keeps its traceback."""
  try:
    status = body(*args)
  except USER_ERRORS as e:
    print(f"\nerror: {e}", file=sys.stderr)
    return 2
  return status if isinstance(status, int) else 0
