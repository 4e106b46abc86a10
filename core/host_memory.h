// Host memory for large working blocks (HostTensor, ThreadScratch): 64-byte aligned (a cache line; AVX-512 loads),
// and from 2 MiB on, 2 MiB-aligned and advised as transparent huge pages: streamed through by one core, 4 KiB
// pages cost a TLB miss (a two-level walk under a hypervisor) every 4 KiB and stop the hardware prefetchers at
// every page boundary. Where THP is off or unsupported the advice is ignored.
#pragma once

#include <cstddef>

namespace vidkv {

// At least `bytes` bytes (rounded up to the alignment), uninitialised; nullptr for 0 bytes or when out of memory.
// Free with std::free.
void* allocate_host_block(std::size_t bytes);

}  // namespace vidkv
