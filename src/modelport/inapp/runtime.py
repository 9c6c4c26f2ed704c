"""The kernel's old home, kept so that code importing ``modelport.inapp.runtime`` still works.

The runtime moved to :mod:`modelport.kernel`; import it from there. This module holds no
code of its own: it gives the kernel's names (the same objects, so ``InputWarning``
filters and ``isinstance`` checks written against either path agree), ``import *`` gives
what it always gave, and any other name the kernel has is looked up there on first use.
"""

from typing import Any

from modelport import kernel as _kernel
from modelport.kernel import *  # noqa: F403
from modelport.kernel import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    # names the kernel's __all__ leaves out (Forest, double_split, shown, ...)
    try:
        return getattr(_kernel, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
