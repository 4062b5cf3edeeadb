"""The pyroute2 classes wgsigc uses, loaded without pyroute2's package ``__init__``.

``import pyroute2`` loads every entry point of the package (NDB, IPDB, the lab, asyncio,
unittest.mock, every tc message): 0.15 s on a PC and about 3 s in the project's emulated VM,
most of a kernel-mode run's start.  wgsigc needs two classes.  Their modules import only
sibling modules by their full names, so they load from the package directory with an empty
package module standing in for ``pyroute2`` (verified with 0.7.2, Debian bookworm's, and 0.9.5).
If that fails with some other version, the package is imported the ordinary way.

Which pyroute2 sends the kernel's peer flags is read from the module's constants rather than
from its version (Debian's says ``__version__ == 'unknown'``, and asking importlib.metadata
costs as much as the import saved): before 0.9.3, ``WGPEER_F_UPDATE_ONLY`` is 2, which is the
kernel's REPLACE_ALLOWEDIPS (linux/wireguard.h: REMOVE_ME 1, REPLACE_ALLOWEDIPS 2, UPDATE_ONLY 4).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

KERNEL_UPDATE_ONLY = 4  # WGPEER_F_UPDATE_ONLY in linux/wireguard.h
WIREGUARD_MODULE = "pyroute2.netlink.generic.wireguard"


def _without_package_init(module: str) -> types.ModuleType:
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("pyroute2 is not installed")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__package__ = "pyroute2"
        sys.modules["pyroute2"] = package
    return importlib.import_module(module)


def _load(module: str, name: str) -> Any:
    """``module.name``, loaded without the package ``__init__`` if possible.  ImportError if
    pyroute2 is not installed."""
    package = sys.modules.get("pyroute2")
    if package is not None and hasattr(package, name):
        return getattr(package, name)  # imported whole already (or a test's stand-in)
    try:
        return getattr(_without_package_init(module), name)
    except ImportError:
        if importlib.util.find_spec("pyroute2") is None:
            raise
    except Exception:
        pass
    # Another layout: forget what was half-loaded and import the package as it wants.
    for loaded in [m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")]:
        del sys.modules[loaded]
    package = importlib.import_module("pyroute2")
    return getattr(package, name)


def wireguard_class() -> Any:
    """pyroute2's ``WireGuard`` (generic netlink to the WireGuard module)."""
    return _load(WIREGUARD_MODULE, "WireGuard")


def sends_kernel_peer_flags() -> bool:
    """True when pyroute2's ``update_only`` really sends UPDATE_ONLY (pyroute2 0.9.3 and later).

    Unknown is taken as old: passing allowed IPs back is safe with every version."""
    wireguard_class()
    for module in (sys.modules.get("pyroute2"), sys.modules.get(WIREGUARD_MODULE)):  # a stand-in first
        flag = getattr(module, "WGPEER_F_UPDATE_ONLY", None)
        if flag is not None:
            return bool(flag == KERNEL_UPDATE_ONLY)
    return False
