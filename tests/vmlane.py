"""A second lane for the VM labs: the suite's time is mostly QEMU boots, one after another.

A lab module (tests/test_kernel_vm.py, ...) defines ``boot_lab()``, which boots its VM once and
returns what the guest reported, and a module-scoped fixture that calls ``lab_of(module,
boot_lab)``. When the session selects such modules and other tests too, tests/conftest.py starts
this lane after collection: the labs boot one after another in a background thread, in their
modules' ``VM_LANE_ORDER``, while pytest runs the other tests (unit tests, nspawn, the package
VM) in its own thread. An emulated guest keeps one of the host's cores busy less than fully and
the unit tests use one, so two lanes take 11 to 13 minutes less than one (38:23 against
24:55-27:12 for the whole suite on the project's 2-core machine); a lab's module then
only waits for its result. A module run alone boots its lab in its fixture, as before.

The lane never prints (pytest captures per test, and a background print would land in whatever
test runs then): ``lab_of`` prints the boot's title line when the module gets its result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from types import ModuleType
from typing import Any

_lane: dict[str, Future[Any]] = {}


def start(labs: list[tuple[str, Callable[[], Any]]]) -> None:
    """Boot ``labs`` (module name, its ``boot_lab``) one after another in a background thread."""
    for name, _ in labs:
        _lane[name] = Future()

    def run() -> None:
        for name, boot in labs:
            future = _lane[name]
            started = time.monotonic()
            try:
                result = boot()
            except BaseException as error:  # pytest.fail and pytest.skip raise BaseExceptions
                future.set_exception(error)
            else:
                future.set_result((result, time.monotonic() - started))

    threading.Thread(target=run, name="vm-lane", daemon=True).start()


def running() -> bool:
    """Whether a lab of the lane has not ended yet."""
    return any(not future.done() for future in _lane.values())


def lab_of(module: ModuleType | str, boot: Callable[[], Any]) -> Any:
    """The lab ``module``'s ``boot_lab`` reported: from the lane if it runs there, else booted now."""
    name = module if isinstance(module, str) else module.__name__
    future = _lane.get(name)
    if future is None:
        return boot()
    waited = time.monotonic()
    result, seconds = future.result()
    print(f"\n[{name}: booted in the background lane, {seconds:.0f} s; waited {time.monotonic() - waited:.0f} s]")
    return result
