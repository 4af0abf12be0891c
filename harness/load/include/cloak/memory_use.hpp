// What a security context costs in memory: the bytes in use on either side, read before and after
// establishing many contexts (issue 19).
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace cloak {

// Bytes this process's allocator has handed out and not taken back (glibc mallinfo2: uordblks, the
// small blocks in use, plus hblkhd, the mmap'ed ones). Exact to the byte and cheap (it walks the
// arenas' free lists): the middle's own heap, or an in-process downstream's.
std::size_t heap_bytes_in_use() noexcept;

// Another process's anonymous resident memory (RssAnon of /proc/PID/status) in bytes: a separate
// downstream's heap as the kernel sees it, in pages, and never shrinking when glibc keeps freed
// memory. Throws std::system_error when the file cannot be read, std::runtime_error when it has no
// RssAnon line.
std::size_t resident_anonymous_bytes(pid_t pid);

}  // namespace cloak
