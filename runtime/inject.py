"""Binding handlers to their dependencies by parameter name, once, where the process is assembled
(as cosmicpython's `bootstrap.inject_dependencies` does).

A handler is `on_<event>(event, uow, *, gateway, currencies)`: the event and the unit of work
are positional, everything else it needs is a keyword-only parameter named after an entry of
the service's `dependencies(ctx)` dict. A keyword-only parameter without a default that no
entry provides is a wiring mistake: it fails here, at start-up, not at the first event.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping


class MissingDependency(RuntimeError):
    """A handler asks for a dependency the service does not provide."""


def wanted(handler: Callable[..., Any]) -> tuple[set[str], set[str]]:
    """The handler's keyword-only parameters: (required, optional)."""
    required, optional = set(), set()
    for p in inspect.signature(handler).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            (required if p.default is inspect.Parameter.empty else optional).add(p.name)
    return required, optional


def bind(handler: Callable[..., Any], dependencies: Mapping[str, Any], *, where: str = "") -> Callable[..., Any]:
    """`handler` with the dependencies it names bound; itself when it names none."""
    required, optional = wanted(handler)
    missing = sorted(required - set(dependencies))
    if missing:
        name = f"{getattr(handler, '__module__', '?')}:{getattr(handler, '__qualname__', repr(handler))}"
        offered = ", ".join(sorted(dependencies)) or "none"
        raise MissingDependency(f"{where}{name} needs {', '.join(missing)}, which its service's dependencies "
                                f"do not provide (provided: {offered})")
    given = {k: dependencies[k] for k in sorted((required | optional) & set(dependencies))}
    if not given:
        return handler
    bound = functools.partial(handler, **given)
    functools.update_wrapper(bound, handler)  # keeps __name__/__module__ for logs and the contract
    return bound


def inject(handlers: Mapping[str, Callable[..., Any]], dependencies: Mapping[str, Any], *,
           service: str = "") -> dict[str, Callable[..., Any]]:
    """Every handler of a table bound; raises MissingDependency naming the topic and function."""
    return {topic: bind(h, dependencies, where=f"{service} handler for {topic}: " if service else f"{topic}: ")
            for topic, h in handlers.items()}
