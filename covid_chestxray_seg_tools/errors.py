"""What an error wraps: libraries (datasets, multiprocessing) re-raise the error a user should
see as the cause or context of their own, and cleanup code can raise another on top."""

from __future__ import annotations

from collections.abc import Iterator


def exception_chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what caused it or was being handled when it was raised, and so on; each
    error once, so a chain that loops back ends."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
