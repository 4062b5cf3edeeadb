"""Test-wide settings.

Hypothesis' per-example deadline is a timing assertion, which the project's tests do not make
(speed is measured under bench/): on a loaded CI machine an example's first run can take longer
than 200 ms (a cold import, a descheduled process) and fail a correct test as Flaky."""

from __future__ import annotations

from typing import Any

try:
    from hypothesis import settings
except ImportError:  # hypothesis is optional for the tests that do not use it
    pass
else:
    settings.register_profile("wgsig", deadline=None)
    settings.load_profile("wgsig")



def pytest_collection_finish(session: Any) -> None:
    """Start tests/vmlane.py's background lane for the selected lab modules, when other tests are
    selected too (alone, a lab module boots its VM in its own fixture). After collection, so that
    ``-m``, ``-k`` and node IDs have chosen the items."""
    if session.config.option.collectonly:
        return
    from tests import vmlane

    modules = {item.module.__name__: item.module for item in session.items if getattr(item, "module", None)}
    labs = sorted((m for m in modules.values() if hasattr(m, "boot_lab")), key=lambda m: m.VM_LANE_ORDER)
    if labs and len(modules) > len(labs):
        from tests.vmlib import ensure_image

        try:
            ensure_image()  # in this thread, once: it may build the image, or skip or fail the VM tests
        except BaseException:
            return  # then each lab module's fixture meets the same verdict itself
        vmlane.start([(m.__name__, m.boot_lab) for m in labs])


def pytest_unconfigure(config: object) -> None:
    """A lab still booting in the background lane (pytest stopped early: -x, Ctrl-C) ends with pytest."""
    from tests import vmlane

    if vmlane.running():
        from tests.vmlib import stop_all

        stop_all()
