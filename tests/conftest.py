"""Test-wide settings.

Hypothesis' per-example deadline is a timing assertion, which the project's tests do not make
(speed is measured under bench/): on a loaded CI machine an example's first run can take longer
than 200 ms (a cold import, a descheduled process) and fail a correct test as Flaky."""

from __future__ import annotations

try:
    from hypothesis import settings
except ImportError:  # hypothesis is optional for the tests that do not use it
    pass
else:
    settings.register_profile("wgsig", deadline=None)
    settings.load_profile("wgsig")
