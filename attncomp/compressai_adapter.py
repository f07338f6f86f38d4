"""CompressAI's package layout, adapted to keep point-cloud, dataset and statistics imports out of an
image codec's start-up. (The private entropy-model internals attncomp uses are in
:mod:`attncomp.models.entropy_internals`.)

``import compressai`` runs ``compressai/__init__.py``, which imports every
subpackage: ``compressai.datasets`` and ``compressai.transforms`` import
torch_geometric (which imports ``torch._dynamo``) and torchvision,
``compressai.registry`` builds its ``TRANSFORMS`` table from every transform
of both, and ``compressai.entropy_models`` imports ``scipy.stats`` for one
``norm.ppf`` call made only when CDF tables are built. Coding an image with
stored CDFs uses none of it, yet it was most of the start-up of a one-image
``attncomp-codec`` call (``benchmarks/startup.py``).

:func:`install` puts a finder in front of ``sys.meta_path`` that defers the
modules in :data:`DEFERRED`: each is created as usual (``__file__``,
``__path__``, ``__spec__``) but its body runs at the first access of a name it
does not have yet, so ``compressai.datasets.ImageFolder``,
``from compressai.transforms import …`` and ``scipy.stats.norm`` work as
before and cost their import only when used. The registry's ``TRANSFORMS``
is a mapping that builds itself at its first read; ``register_transform``
works before and after.

Why not ``importlib.util.LazyLoader``: it loads on *any* attribute access,
``__file__`` included, and ``inspect.getmodule`` (which ``torch.jit.script``
calls) reads ``__file__`` of every module in ``sys.modules``; that loaded
``compressai.datasets`` in the middle of torch_geometric's own import and
failed there with a circular import.

If a module is not where we expect it, or the registry module no longer
defines ``TRANSFORMS`` and ``register_transform``, that module is imported
normally: slower, never wrong. ``tests/test_startup.py`` fails, saying so, if
torch_geometric comes back into ``import attncomp.codec``. One difference
remains: CompressAI's ``DATASETS`` registry lists its datasets once
``compressai.datasets`` has been used (reading any of its names does).
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import sys
import threading
import warnings
from collections.abc import MutableMapping

_REGISTRY = "compressai.registry.transforms"
DEFERRED = (
    "compressai.datasets",  # torch_geometric, torchvision, point-cloud and video datasets
    "compressai.transforms",  # torch_geometric point-cloud transforms
    _REGISTRY,  # TRANSFORMS: every torchvision and torch_geometric transform
    "scipy.stats",  # compressai.entropy_models: norm.ppf, only when CDF tables are built
)


def install() -> None:
    """Defer :data:`DEFERRED` in this process. Idempotent; a module already imported stays as it is."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())


def deferred(module) -> bool:
    """Whether ``module``'s body has not run yet (it runs at its first use)."""
    return isinstance(getattr(module.__spec__, "loader", None), _DeferredLoader)


def load(module):
    """``module``, its body run now if it was deferred."""
    if deferred(module):
        module.__spec__.loader.run(module)
    return module


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        spec = None
        for finder in sys.meta_path:  # the spec the import would have had without us
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None  # not there, or a loader we do not know: the normal import decides
        if name == _REGISTRY and not _defines(spec, {"TRANSFORMS", "register_transform"}):
            return None
        spec.loader = _DeferredLoader(spec.loader)
        return spec


def _defines(spec, names: set) -> bool:
    """Whether the module's source defines ``names`` at top level (read, not run)."""
    try:
        tree = ast.parse(spec.loader.get_source(spec.name))
    except Exception:  # no source (bytecode only), unreadable: we cannot tell
        return False
    found = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update(t.id for t in targets if isinstance(t, ast.Name))
    return names <= found


class _DeferredLoader(importlib.abc.Loader):
    """Creates the module as its own loader would; runs its body at the first missing name (or ``dir()``)."""

    def __init__(self, loader):
        self.loader = loader
        self._lock = threading.RLock()

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        def __getattr__(name: str):
            if name.startswith("__") and name != "__all__":  # probes (__wrapped__, …), not uses
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            self.run(module)  # waits for another thread's run; returns at once inside our own
            if vars(module).get("__getattr__") is __getattr__:  # the body is running: not defined yet
                raise AttributeError(f"partially initialised module {module.__name__!r} has no attribute {name!r}")
            return getattr(module, name)

        def __dir__():  # tab completion and help() list the real names
            self.run(module)
            return sorted(vars(module)) if vars(module).get("__dir__") is __dir__ else dir(module)

        module.__getattr__, module.__dir__ = __getattr__, __dir__
        if module.__name__ == _REGISTRY:
            table = _DeferredTable(lambda: load(module).TRANSFORMS)
            module.TRANSFORMS = table
            module.register_transform = table.register

    def run(self, module) -> None:
        """The module's own body, once. A failure leaves it deferred, so that the next use raises again."""
        with self._lock:
            if module.__spec__.loader is not self:
                return
            hooks = {name: vars(module)[name] for name in ("__getattr__", "__dir__")}
            module.__spec__.loader = module.__loader__ = self.loader
            try:
                with warnings.catch_warnings():
                    # torch_geometric's torch.jit.script calls warn of a deprecation that means nothing here
                    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
                    self.loader.exec_module(module)
            except BaseException:
                module.__spec__.loader = module.__loader__ = self
                vars(module).update(hooks)
                raise
            for name, hook in hooks.items():
                if vars(module).get(name) is hook:  # the body may define a __getattr__ or __dir__ of its own
                    del vars(module)[name]


class _DeferredTable(MutableMapping):
    """CompressAI's ``TRANSFORMS``, built at its first read (building it imports torchvision and torch_geometric).

    Registrations made before that are kept and added to the built table; afterwards every
    operation goes to the real table, which the real ``register_transform`` fills too.
    """

    def __init__(self, build):
        self._build = build
        self._early = {}
        self._table = None
        self._lock = threading.RLock()

    def register(self, name: str):
        """``compressai.registry.register_transform``: a decorator that stores a class under ``name``."""

        def decorator(cls):
            self[name] = cls
            return cls

        return decorator

    def _real(self) -> dict:
        with self._lock:
            if self._table is None:
                table = self._build()
                table.update(self._early)
                self._table = table
                load(importlib.import_module("compressai.transforms"))  # its point transforms register themselves
        return self._table

    def __setitem__(self, key, value):
        with self._lock:
            (self._early if self._table is None else self._table)[key] = value

    def __getitem__(self, key):
        return self._real()[key]

    def __delitem__(self, key):
        del self._real()[key]

    def __iter__(self):
        return iter(self._real())

    def __len__(self):
        return len(self._real())

    def __repr__(self):
        return repr(self._real()) if self._table is not None else "<compressai TRANSFORMS, built at first use>"
