"""Typed component registries, one per kind (timm `_registry.py` style).

A registry maps a name to a builder. Entries register themselves with a decorator in the module
that defines them; a registry knows which modules to import so that `build("x")` works without the
caller importing anything first::

    PLANNERS = Registry("planner", modules=["models.planner"])

    @PLANNERS.register
    def mar(cfg): ...

    PLANNERS.build("mar", cfg=cfg)

An unknown name raises `UnknownComponentError` with every valid name and the closest match, so a
typo in an ablation grid fails in one readable line.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UnknownComponentError(KeyError):
    """An unknown registry name; the message lists the valid names and the closest match."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[F]):
    """Name -> builder mapping for one component kind."""

    def __init__(self, kind: str, modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._modules = list(modules)
        self._entries: Dict[str, F] = {}
        self._meta: Dict[str, Any] = {}
        self._deprecated: Dict[str, str] = {}
        self._loaded = False

    # -- registration -----------------------------------------------------------------------
    def register(self, fn: Optional[F] = None, *, name: Optional[str] = None, meta: Any = None) -> Any:
        """Decorator; the name defaults to the function's name. Re-registering a name fails. `meta`:
        what the rest of the toolkit needs to know about the entry (a metric's direction, label...)."""

        def wrap(f: F) -> F:
            key = name or f.__name__
            if key in self._entries and self._entries[key] is not f:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = f
            if meta is not None:
                self._meta[key] = meta
            return f

        return wrap(fn) if fn is not None else wrap

    def deprecate(self, old: str, new: str) -> None:
        """Keep an old name working (old grids keep running) and point it at its new name."""
        self._deprecated[old] = new

    # -- lookup -----------------------------------------------------------------------------
    def _load(self) -> None:
        if not self._loaded:
            for module in self._modules:
                importlib.import_module(module)
            self._loaded = True

    def resolve(self, name: str) -> str:
        """The canonical name for `name` (following deprecations), or UnknownComponentError."""
        self._load()
        name = self._deprecated.get(name, name)
        if name not in self._entries:
            raise UnknownComponentError(self.unknown_message(name))
        return name

    def unknown_message(self, name: str) -> str:
        valid = self.list()
        close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} valid: {', '.join(valid)}"

    def get(self, name: str) -> F:
        return self._entries[self.resolve(name)]

    def meta(self, name: str) -> Any:
        """The entry's registered metadata (None if it has none); UnknownComponentError if unknown."""
        return self._meta.get(self.resolve(name))

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a toy component clean up with this)."""
        self._entries.pop(name, None)
        self._meta.pop(name, None)

    def in_order(self) -> List[str]:
        """Names in registration order (the order a module lists them in, e.g. a table's columns)."""
        self._load()
        return list(self._entries)

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the builder; keyword arguments that are None are dropped (component default)."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*") -> List[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries or name in self._deprecated

    def __iter__(self):
        return iter(self.list())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


# One registry per component kind. The modules listed are imported on first lookup.
PLANNERS: Registry = Registry("planner", modules=["models.planner"])
GENERATORS: Registry = Registry("generator", modules=["models.generator"])
ATTENTIONS: Registry = Registry("attention", modules=["models.attention"])
MASK_SCHEDULES: Registry = Registry("mask schedule", modules=["models.masks"])
NOISE_SCHEDULES: Registry = Registry("noise schedule", modules=["models.diffusion"])
CODECS: Registry = Registry("codec", modules=["models.codecs"])
MODEL_PRESETS: Registry = Registry("model preset", modules=["mardini_bench.presets"])
# A preset's training recipe (TrainConfig fields) under the preset's name: `model=NAME` applies both.
TRAIN_RECIPES: Registry = Registry("training recipe", modules=["mardini_bench.presets"])
TASKS: Registry = Registry("task", modules=["tasks"])
DATASETS: Registry = Registry("dataset", modules=["mardini_bench.data"])
METRICS: Registry = Registry("metric", modules=["mardini_bench.metrics"])
BASELINES: Registry = Registry("baseline", modules=["models.baselines"])

REGISTRIES: Dict[str, Registry] = {
    r.kind: r
    for r in (PLANNERS, GENERATORS, ATTENTIONS, MASK_SCHEDULES, NOISE_SCHEDULES, CODECS,
              MODEL_PRESETS, TRAIN_RECIPES, TASKS, DATASETS, METRICS, BASELINES)
}
