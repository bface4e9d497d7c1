#pragma once
// CPU memory for tensors: 64-byte aligned blocks from the C library, with freed large blocks
// kept for reuse. A training step frees and allocates the same large activations every step;
// glibc serves such blocks with fresh mmap()s whose pages fault in on first touch, which cost
// ~6% of a CNN epoch in the kernel. Blocks of at least kMinCachedBytes are cached by exact
// rounded size instead (a training loop asks for the same sizes each step).
#include <cstddef>

namespace lumen {

inline constexpr size_t kMinCachedBytes = size_t{256} << 10;
// The most bytes the cache holds; a block that would exceed it first empties the cache (so
// sizes from an earlier phase, say validation's, do not crowd out the current ones).
inline constexpr size_t kMaxCachedBytes = size_t{1} << 30;

// nbytes is rounded up to 64 (below kMinCachedBytes) or to 4 KiB pages (at and above), and
// cpu_deallocate must be given the same nbytes. Throws lumen::Error when out of memory.
void* cpu_allocate(size_t nbytes);
void cpu_deallocate(void* p, size_t nbytes);

// Bytes held in cached free blocks, and a way to give them back to the C library.
size_t cpu_cached_bytes();
void cpu_empty_cache();

}  // namespace lumen
