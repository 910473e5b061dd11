"""The cyclic garbage collector paused while one piece of work makes many objects.

A core's input is a short burst that allocates and mostly frees by reference
counting; a big one (a clearing file of a million rows, an expiry sweep, a
ledger rebuild) makes millions of objects that live on, and each
generation-2 collection during it would rescan every object already built:
at a million items that is a quarter of the time. Paused, the collector runs
once the work is done, on what is garbage by then.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
