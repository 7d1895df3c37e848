"""Where the autoscalers' forkserver takes the free chunks of its C heap before it forks them.

A forked autoscaler shares its parent's heap until either writes to a page. glibc's malloc serves a small request
from a free chunk of the right size first: the forkserver's heap has hundreds of them, left between live blocks by
its imports and scattered over megabytes, so each autoscaler's C allocations (gRPC's, as its GCS client starts, above
all) landed one or two to a page of that shared heap and copied every page they touched: ~1.4 MB of private memory
per autoscaler for a few hundred KB of data. Taken by the forkserver once (never freed: it is memory the heap holds
anyway), those chunks are no longer there to land in, and an autoscaler's allocations come from the heap's free end,
packed into pages of their own. `python -m bench.monitor_memory` measures it.

glibc says where its free chunks are in malloc_info(3)'s XML; another libc (or none that says) is left as it is.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

ROUNDS = 8  # a chunk larger than the size taken is split; what is left is taken in the next round
_CHUNK_FLAGS = 0xF  # the low bits malloc_info shows of a chunk's size field (PREV_INUSE, …; sizes are 16-aligned)
_HEADER = 8  # bytes of a chunk's size field: a request of (chunk size - 8) takes exactly one chunk of that size
_PIECE = 64 * 1024  # a larger chunk is taken in pieces: malloc would serve a large request from mmap, not the heap
_SIZE = re.compile(r'<size from="(\d+)" to="\d+" total="\d+" count="(\d+)"/>')
_taken: list[int] = []  # the chunks taken, held for the process's life


def free_chunks(malloc_info_xml: str) -> list[tuple[int, int]]:
    """(chunk size, count) of the free chunks of the main heap (glibc's arena 0, the one `brk` grows) in malloc_info's
    XML, smallest first."""
    main_heap = malloc_info_xml.split("</heap>", 1)[0]
    return [(int(size) & ~_CHUNK_FLAGS, int(count)) for size, count in _SIZE.findall(main_heap)]


def _libc() -> Any:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_info") or not hasattr(libc, "open_memstream"):
        return None
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.open_memstream.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _malloc_info(libc: Any) -> str:
    buffer, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    try:
        return ctypes.string_at(buffer, size.value).decode()
    finally:
        libc.free(buffer)


def main_heap_free_chunks() -> list[tuple[int, int]]:
    """free_chunks() of this process (none off glibc)."""
    libc = _libc()
    return [] if libc is None else free_chunks(_malloc_info(libc))


def take_free_chunks() -> int:
    """Take (malloc and keep) the main heap's free chunks; the bytes taken (0 off glibc)."""
    libc = _libc()
    if libc is None:
        return 0
    taken = 0
    for _ in range(ROUNDS):
        chunks = free_chunks(_malloc_info(libc))
        if not chunks:
            break
        for chunk_size, count in chunks:
            piece = min(chunk_size, _PIECE)
            for _ in range(count * (chunk_size // piece)):
                _taken.append(libc.malloc(piece - _HEADER))
                taken += piece
    return taken
