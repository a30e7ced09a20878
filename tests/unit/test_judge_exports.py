"""``judges.llm`` and ``judges.mock`` export sorted, documented, existing names (as httpx does)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

PACKAGES = ("judges.llm", "judges.mock")


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    subs = [
        importlib.import_module(f"{package}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)
    ]
    return [pkg, *subs]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_names_exist(package: str) -> None:
    for module in _modules(package):
        names = module.__all__
        assert names == sorted(names, key=_isort_key), module.__name__
        assert len(set(names)) == len(names), module.__name__
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_re_exports_every_public_name(package: str) -> None:
    pkg, *subs = _modules(package)
    for module in subs:
        missing = set(module.__all__) - set(pkg.__all__)
        assert not missing, f"{package} does not re-export {sorted(missing)} of {module.__name__}"
        for name in module.__all__:
            assert getattr(pkg, name) is getattr(module, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_classes_and_functions_are_documented(package: str) -> None:
    for module in _modules(package):
        assert module.__doc__, module.__name__
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name}"
                for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        assert inspect.getdoc(member), f"{module.__name__}.{name}.{attr}"


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package: str) -> None:
    for module in _modules(package):
        assert module.__file__ is not None
        lines = len(Path(module.__file__).read_text().splitlines())
        assert lines <= 400, f"{module.__name__} has {lines} lines"
