"""``import torch`` served by minattn, for one process: what ``minattn run SCRIPT.py`` does.

A PyTorch script limited to what minattn has runs unchanged: ``torch`` is minattn,
``torch.nn`` is ``minattn.nn``, ``torch.nn.functional`` is ``minattn.functional``, and so
on (``MODULES``). Each ``torch`` module here is a small module object that reads its names
from the minattn module it stands for; a name minattn lacks fails where it is first used,
with one message that names it::

    >>> with installed():
    ...     import torch.nn as nn
    ...     nn.Conv2d
    Traceback (most recent call last):
    AttributeError: minattn has no torch.nn.Conv2d; see the PyTorch page of the docs

Nothing is installed by importing this module: ``install()`` (or ``with installed():``)
puts the modules in ``sys.modules`` and a finder in front of ``sys.meta_path`` that refuses
every other ``torch.*`` module, and ``uninstall()`` gives back whatever was there before
(a real PyTorch included).

``supported()`` lists the names served, computed from the minattn modules' ``__all__``
(and for ``torch.Tensor``, from a tensor's public attributes), so the list on the
documentation's PyTorch page is generated from the code and cannot drift from it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import inspect
import sys
import types

import minattn

MESSAGE = "minattn has no {name}; see the PyTorch page of the docs"

# each torch module served, and the minattn module that serves it
MODULES = {
    "torch": "minattn",
    "torch.nn": "minattn.nn",
    "torch.nn.functional": "minattn.functional",
    "torch.nn.init": "minattn.nn.init",
    "torch.nn.utils": "minattn.nn.utils",
    "torch.optim": "minattn.optim",
    "torch.cuda": "minattn.cuda",
}

# Names minattn exports that PyTorch has not at that place, or has as something else: not
# served under torch (a PyTorch script never meant them) and not listed as PyTorch's.
MINATTN_ONLY = {
    "torch": {"Function", "GradcheckError", "GradcheckReport", "astype", "cuda_available",
              "default_device", "getitem", "gradcheck", "gradcheck_report", "module_gradcheck",
              "to"},
    "torch.nn": {"MLP", "MultiHeadAttention", "TransformerBlock",  # PyTorch: MultiheadAttention
                 "Transformer"},  # PyTorch's is an encoder-decoder; minattn's a language model
    "torch.nn.functional": {"matmul"},  # torch.matmul
    "torch.nn.utils": {"grad_norm"},
    "torch.optim": {"clip_grad_norm_"},  # torch.nn.utils.clip_grad_norm_
    "torch.Tensor": {"astype"},
}

# what scripts read as the version: PyTorch's numbering (of the release minattn follows),
# with minattn's own version as the local part
VERSION = f"2.13.0+minattn.{minattn.__version__}"


def _target(name: str) -> types.ModuleType | None:
    """The minattn module serving the torch module ``name``; None while minattn has none."""
    module_name = MODULES[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # a module that exists but fails to import: a bug
            raise
        return None


def served_names(name: str) -> list[str]:
    """The public names the torch module ``name`` serves (its submodules aside), sorted.

    They are the minattn module's ``__all__`` (or, where it has none, the functions and
    classes it defines), less its submodules and the ``MINATTN_ONLY`` names.
    """
    if name == "torch.Tensor":
        names = {n for n in dir(minattn.zeros(1)) if not n.startswith("_")}
        return sorted(names - MINATTN_ONLY["torch.Tensor"])
    target = _target(name)
    if target is None:
        return []
    if hasattr(target, "__all__"):
        names = set(target.__all__)
    else:
        names = {n for n, value in vars(target).items()
                 if (inspect.isfunction(value) or inspect.isclass(value))
                 and value.__module__ == target.__name__}
    names = {n for n in names if not n.startswith("_") and hasattr(target, n)
             and not inspect.ismodule(getattr(target, n))}
    return sorted(names - MINATTN_ONLY.get(name, set()))


def supported() -> dict[str, list[str]]:
    """Every torch module minattn serves -> the names it has, and ``torch.Tensor`` -> the
    methods and properties of a tensor. A module whose minattn side is missing is left out.

    >>> "softmax" in supported()["torch.nn.functional"]
    True
    """
    found = {name: served_names(name) for name in MODULES if _target(name) is not None}
    found["torch.Tensor"] = served_names("torch.Tensor")
    return found


def _children(name: str) -> dict[str, str]:
    """The served submodules directly under ``name``: attribute -> full module name."""
    return {full.rpartition(".")[2]: full for full in MODULES
            if full.rpartition(".")[0] == name}


class TorchModule(types.ModuleType):
    """One ``torch`` module: its names are read from the minattn module that serves it.

    A name minattn lacks raises AttributeError with ``MESSAGE``, so that
    ``hasattr(torch.nn.functional, "scaled_dot_product_attention")`` works as on PyTorch.
    """

    def __init__(self, name: str, target: types.ModuleType, finder: TorchFinder):
        super().__init__(name, f"{name}, served by {target.__name__} (see minattn.pytorch)")
        self.__spec__ = importlib.machinery.ModuleSpec(name, finder, is_package=True)
        self.__loader__ = finder
        self.__package__ = name
        self.__path__ = []  # a package: `import torch.x`, `from torch import x` ask the finder
        self._served = frozenset(served_names(name))
        self._target_module = target
        self._finder = finder
        if name == "torch":
            self.__version__ = VERSION

    def __getattr__(self, attr: str):
        if attr == "__all__":
            return sorted(self._served)
        child = _children(self.__name__).get(attr)
        if child is not None and child in self._finder.modules:
            return self._finder.modules[child]
        if attr in self._served:
            return getattr(self._target_module, attr)
        if attr.startswith("__"):  # what tools probe for (__file__, __wrapped__): no advice
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")
        raise AttributeError(MESSAGE.format(name=f"{self.__name__}.{attr}"), name=attr)

    def __delattr__(self, attr: str):
        """``del torch.nn.functional.scaled_dot_product_attention`` hides the name from this
        torch module (as deleting it from PyTorch's would), not from minattn."""
        if attr in self.__dict__:
            super().__delattr__(attr)
        elif attr in self._served:
            self._served = self._served - {attr}
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self):
        return sorted({*super().__dir__(), *self._served, *_children(self.__name__)})

    def __repr__(self) -> str:
        return f"<module {self.__name__!r} (served by {self._target_module.__name__})>"


class TorchFinder:
    """Finds the served torch modules, and refuses every other ``torch.*`` with ``MESSAGE``.

    Its ModuleNotFoundError has no ``name``, so that ``from torch import utils`` reports it
    too (the import system passes over a missing submodule of that name in silence).
    """

    def __init__(self):
        self.modules = {}
        for name in MODULES:  # parents first: the dict is in that order
            target = _target(name)
            if target is not None:
                self.modules[name] = TorchModule(name, target, self)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch" and not fullname.startswith("torch."):
            return None
        if fullname in self.modules:
            return self.modules[fullname].__spec__
        raise ModuleNotFoundError(MESSAGE.format(name=fullname))

    def create_module(self, spec):
        return self.modules[spec.name]

    def exec_module(self, module):
        pass  # nothing to run: the module reads its names from minattn when asked

    def invalidate_caches(self):
        pass


_installed: list = []  # while installed: [finder, the torch modules it replaced]


def _is_torch(name: str) -> bool:
    return name == "torch" or name.startswith("torch.")


def install() -> None:
    """Serve ``import torch`` (and its submodules) from minattn in this process, until
    ``uninstall()``. A PyTorch already imported is put aside, not lost. Installing twice is
    a no-op."""
    if _installed:
        return
    finder = TorchFinder()
    replaced = {name: sys.modules.pop(name) for name in list(sys.modules) if _is_torch(name)}
    sys.modules.update(finder.modules)
    sys.meta_path.insert(0, finder)
    _installed[:] = [finder, replaced]


def uninstall() -> None:
    """Undo ``install()``: the torch modules of before come back (none, or a real PyTorch)."""
    if not _installed:
        return
    finder, replaced = _installed
    _installed.clear()
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(finder)
    for name in [name for name in sys.modules if _is_torch(name)]:
        del sys.modules[name]
    sys.modules.update(replaced)


def is_installed() -> bool:
    """Whether ``import torch`` is served by minattn now."""
    return bool(_installed)


@contextlib.contextmanager
def installed():
    """``with installed(): import torch`` gets minattn, and only inside the block."""
    was = is_installed()
    install()
    try:
        yield sys.modules["torch"]
    finally:
        if not was:
            uninstall()


__all__ = ["MESSAGE", "MINATTN_ONLY", "MODULES", "VERSION", "TorchFinder", "TorchModule", "install",
           "installed", "is_installed", "served_names", "supported", "uninstall"]
