"""Public surface explicit: every package and every public module declares ``__all__``, and it
names exactly what is public there.

A package's ``__all__`` equals the public names it holds once each is resolved (``evidence``
and ``connectors`` import theirs on first use). A public module's ``__all__`` names only what
exists, and every public class or function defined in the module is in it — except the
command functions of ``cli`` modules, whose public surface is their typer app.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

PACKAGES = [
    "onceonly",
    "catalog",
    "connectors",
    "contracts",
    "evidence",
    "lake",
    "sharing",
    "flows",
    "cli",
    "departments",
]


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__, f"{package}."):
            if not info.name.rsplit(".", 1)[1].startswith("_"):
                names.append(info.name)
    return sorted(names)


def _commands(module: ModuleType) -> set[str]:
    """Functions registered as commands or callbacks on the module's typer apps."""
    import typer

    names = set()
    for value in vars(module).values():
        if isinstance(value, typer.Typer):
            names |= {c.callback.__name__ for c in value.registered_commands if c.callback}
            if value.registered_callback and value.registered_callback.callback:
                names.add(value.registered_callback.callback.__name__)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_exports_exactly_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    declared = module.__all__
    assert len(declared) == len(set(declared)), "a name twice"
    for name in declared:
        assert getattr(module, name) is not None or name in vars(module)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(declared)


@pytest.mark.parametrize("name", _modules())
def test_a_public_module_declares_what_it_defines(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what does not exist: {missing}"
    defined = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    }
    unlisted = defined - set(module.__all__) - _commands(module)
    assert not unlisted, f"{name} defines public {sorted(unlisted)} outside __all__"
