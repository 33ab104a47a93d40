"""gqn.allocator: large blocks come from the heap, which keeps what is freed, not from mmap,
which hands every freed block back to the kernel to be faulted in again."""

import platform
import subprocess
import sys

import pytest

NEW_MAPPINGS = """
import sys, torch
if sys.argv[1] == "keep":
    from gqn.allocator import keep_freed_memory
    assert keep_freed_memory()
def regions():
    return {tuple(line.split()[:1] + line.split()[5:]) for line in open("/proc/self/maps")}
before = regions()
block = torch.empty(25 * 2**20)  # 100 MiB
for span, *name in regions() - before:
    lo, hi = (int(x, 16) for x in span.split("-"))
    print((hi - lo) >> 20, name[0] if name else "anonymous")
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")


def new_mappings(mode: str) -> list[tuple[int, str]]:
    """The memory regions (MiB, name) that a 100 MiB tensor added to a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", NEW_MAPPINGS, mode], check=True, capture_output=True, text=True
    )
    return [(int(size), name) for size, name in (line.split() for line in out.stdout.splitlines())]


@glibc
def test_a_large_block_comes_from_the_heap_not_from_a_mapping_of_its_own():
    assert any(size >= 100 and name == "anonymous" for size, name in new_mappings("default"))
    kept = new_mappings("keep")
    assert not any(size >= 100 and name == "anonymous" for size, name in kept)
    assert any(size >= 100 and name == "[heap]" for size, name in kept)
