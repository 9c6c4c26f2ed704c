"""Alias history: replaying the events of one alias to know where a rollback goes.

A ``set`` pushes the new target; a ``rollback`` pops the current one, so rolling back twice
goes two promotions back, not back and forth between the last two.
"""

from __future__ import annotations

from collections.abc import Iterable


def replay(events: Iterable[dict]) -> list[int]:
    """The stack of versions an alias went through, oldest first, from its events."""
    stack: list[int] = []
    for e in events:
        if e["action"] == "set":
            # re-pointing an alias at the version it has is no promotion to roll back over
            if not stack or stack[-1] != e["to_version"]:
                stack.append(e["to_version"])
        elif e["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != e["to_version"]:
                stack.append(e["to_version"])
        elif e["action"] == "delete":
            stack.clear()
    return stack


def rollback_target(events: Iterable[dict]) -> int | None:
    """The version a rollback moves the alias to, or None if there is none before it."""
    stack = replay(events)
    return stack[-2] if len(stack) >= 2 else None
