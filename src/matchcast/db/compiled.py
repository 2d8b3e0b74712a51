"""Compiled SQL kept per statement shape, as SQLAlchemy's own engines keep it.

`databases` compiles every statement on every execution. For the few statements of a score
update that was half of the update's CPU (py-spy of `matchcast serve`, docs/performance.md).
SQLAlchemy can tell two statements of the same shape apart from their bound values (its cache
key); a statement whose shape was compiled before reuses that compilation with its own values.

Statements SQLAlchemy calls uncacheable (multi-row VALUES, for one) and those whose compiled
text depends on their values (IN lists expanded at compile time) are compiled every time.

The few statements of the hot path (a score update) go further: `Prepared` builds them once,
with named parameters, so a call builds no statement and no cache key either; the backends
of db/backends.py also keep what `databases` derives from a compilation on every call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.ddl import DDLElement

MAX_SHAPES = 1000  # the application has a few dozen statement shapes; this only bounds a leak
_UNCACHEABLE = object()


class CompiledCache:
    """One per Database (one dialect). Only the event loop's thread uses it."""

    def __init__(self, max_shapes: int = MAX_SHAPES) -> None:
        self.max_shapes = max_shapes
        self._compiled: dict[Any, Any] = {}
        self.hits = self.misses = 0

    def prepare(self, query: Any) -> Any:
        """`query`, or a stand-in that `databases` compiles from the cache."""
        if not isinstance(query, ClauseElement) or isinstance(query, DDLElement):
            return query
        key = query._generate_cache_key()
        if key is None:
            return query
        return _Cached(self, query, key)

    def compile(self, query: ClauseElement, key: Any, dialect: Any, compile_kwargs: dict[str, Any]) -> Any:
        compiled = self._compiled.get(key.key)
        if compiled is _UNCACHEABLE:
            return query.compile(dialect=dialect, compile_kwargs=compile_kwargs)
        if compiled is not None:
            self.hits += 1
            return _WithValues(compiled, key.bindparams)
        self.misses += 1
        # The cache key given to the compiler lets later statements' values be matched to its
        # parameters (construct_params(extracted_parameters=...)).
        compiled = query.compile(dialect=dialect, cache_key=key, compile_kwargs=compile_kwargs)
        if len(self._compiled) >= self.max_shapes:
            del self._compiled[next(iter(self._compiled))]
        if getattr(compiled, "post_compile_params", None) or getattr(compiled, "literal_execute_params", None):
            self._compiled[key.key] = _UNCACHEABLE  # values are part of its text
        else:
            self._compiled[key.key] = compiled
        return compiled  # compiled from this very statement: its own values are right


class _Cached:
    """What `databases` gets in place of the statement: it only calls compile() on it."""

    __slots__ = ("cache", "key", "query")

    def __init__(self, cache: CompiledCache, query: ClauseElement, key: Any) -> None:
        self.cache = cache
        self.query = query
        self.key = key

    def compile(self, dialect: Any = None, compile_kwargs: dict[str, Any] | None = None, **_: Any) -> Any:
        return self.cache.compile(self.query, self.key, dialect, compile_kwargs or {})


class _WithValues:
    """A cached compilation that answers with another statement's values."""

    __slots__ = ("_compiled", "_values")

    def __init__(self, compiled: Any, values: Any) -> None:
        self._compiled = compiled
        self._values = values

    def construct_params(self, *args: Any, **kwargs: Any) -> Any:
        return self._compiled.construct_params(*args, extracted_parameters=self._values, **kwargs)

    @property
    def params(self) -> Any:
        return self.construct_params(_check=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


class Prepared:
    """A statement built once with named parameters (`sa.bindparam`); run it with its values:
    `await db.fetch_one(STATEMENT(match_id=3))`. Compiled once per kind of database."""

    __slots__ = ("_compiled", "plans", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], Any] = {}
        self.plans: dict[str, Any] = {}  # per dialect name: how its backend runs it (db/backends.py)

    def __call__(self, **values: Any) -> Bound:
        return Bound(self, values)

    def compiled(self, dialect: Any, compile_kwargs: dict[str, Any]) -> Any:
        key = (dialect.name, dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self.statement.compile(dialect=dialect, compile_kwargs=compile_kwargs)
        return compiled


class Bound:
    """A Prepared statement with its values. `databases` only calls compile() on it; the
    backends of db/backends.py run it from its plan instead."""

    __slots__ = ("prepared", "values")

    def __init__(self, prepared: Prepared, values: dict[str, Any]) -> None:
        self.prepared = prepared
        self.values = values

    def compile(self, dialect: Any = None, compile_kwargs: dict[str, Any] | None = None, **_: Any) -> Any:
        return _WithNamedValues(self.prepared.compiled(dialect, compile_kwargs or {}), self.values)


class _WithNamedValues(_WithValues):
    def construct_params(self, *args: Any, **kwargs: Any) -> Any:
        return self._compiled.construct_params(self._values, *args, **kwargs)

    @property
    def params(self) -> Any:  # checked: a value left out is an error, never a NULL
        return self.construct_params()
