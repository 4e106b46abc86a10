// Programmatic dependent launch (Hopper, compute capability 9.0): a kernel launched with the stream attribute
// cudaLaunchAttributeProgrammaticStreamSerialization may start while the kernel before it on the stream is still
// finishing; it waits for that kernel's completion and memory (PTX griddepcontrol.wait) before it touches device
// memory. What is gained: the launch and the block dispatch of the next kernel overlap the end of the previous one,
// instead of following its completion. CUDA sources only.
//
// Contract for a kernel launched with launch_dependent():
//   * it calls wait_for_previous_grid() before its first access to device memory (reads AND writes: the previous
//     kernel may still read a buffer this one writes), and allow_next_grid() only after it. Exceptions: the first
//     kernel of a call whose caller promised independence (GridOrder below, late), which waits at its end; and where
//     the previous kernel was itself a plain launch, everything before it has completed by the time this one starts
//     (its blocks have all started), so this one may read, before its wait, what that kernel neither writes nor
//     reads-then-overwrites (attention: launch_beside_previous, and the fragment kernel after the query transform,
//     decode_attention_fragment.cu);
//   * it may call allow_next_grid(): the next kernel (if launched this way too) is dispatched once every block of
//     this one has called it or exited, so a call at the start lets the next kernel's blocks take the
//     multiprocessors that this kernel's last wave frees (its earlier waves are not displaced: blocks not yet started
//     have not called it); a kernel that never calls it lets the next one start when all its blocks have exited.
// On devices below 9.0, for kernels whose code on the device was compiled for an older architecture (a build with
// -DCMAKE_CUDA_ARCHITECTURES below 90: no griddepcontrol in it), or with VIDKV_NO_DEPENDENT_LAUNCH=1 in the
// environment (to measure what it gains), kernels are launched as usual and both calls do nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace vidkv::dependent_launch {

__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Where a kernel launched by launch_dependent waits for the grid before it: at its start (wait_for_previous_grid,
// then allow_next_grid), or, `late`, at its end: the kernel does its work while the grid before it finishes, then
// waits and only then lets the next kernel start (end()), so that its grid still completes after that one and the
// stream's order holds for whatever follows. Late waiting is for the first kernel of a call made with
// Execution::after_independent_kernel (execution.h), which promises that the kernel before it neither writes what
// this kernel reads nor touches what it writes. Every VidKV kernel, late ones included, lets its dependents start
// only after its own wait, so whatever was enqueued before the kernel before this one is complete when this one
// starts. Every thread calls end() (no early return before it).
class GridOrder {
 public:
  __device__ __forceinline__ explicit GridOrder(bool late) : late_(late) {
    if (!late_) {
      wait_for_previous_grid();
      allow_next_grid();
    }
  }
  __device__ __forceinline__ void end() const {
    if (late_) {
      wait_for_previous_grid();
      allow_next_grid();
    }
  }

 private:
  bool late_;
};

// Whether the current device takes the attribute (compute capability 9.0 or newer) and the environment does not
// turn it off; asked once per process (the project runs on one device per process). A failed query is cleared from
// the runtime's last error (it would otherwise be reported as the next launch's failure) and turns it off.
inline bool enabled() {
  static const bool on = [] {
    const char* off = std::getenv("VIDKV_NO_DEPENDENT_LAUNCH");
    if (off != nullptr && std::strcmp(off, "0") != 0 && off[0] != '\0') return false;
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

// Whether the code of `kernel` that runs on the current device was compiled for sm_90 or newer: only then does it
// hold the griddepcontrol instructions (a build for an older architecture, JIT-compiled from its PTX on a Hopper
// device, has none and must not start early). launch_dependent asks once per kernel.
inline bool kernel_waits(const void* kernel) {
  cudaFuncAttributes a{};
  if (cudaFuncGetAttributes(&a, kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return a.ptxVersion >= 90 && a.binaryVersion >= 90;
}

// kernel<<<grid, block, smem, stream>>>(args...) with the programmatic stream serialization attribute, always (no
// fallback: the callers below decide); the launch's status. The one place that builds such a launch.
template <class... KArgs, class... Args>
cudaError_t launch_programmatic(void (*kernel)(KArgs...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream,
                                Args&&... args) {
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// Kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream serialization where enabled() and the
// kernel's code has the wait (kernel_waits, asked at the kernel's first launch: a static per kernel). Launch errors
// are left to the caller's check_launch (cudaGetLastError, which also reports a failed cudaLaunchKernelEx), as with
// <<<>>>.
template <auto Kernel, class... Args>
void launch_dependent(dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, Args&&... args) {
  if (!enabled()) {
    Kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
    return;
  }
  static const bool waits = kernel_waits(reinterpret_cast<const void*>(Kernel));
  if (!waits) {
    Kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
    return;
  }
  (void)launch_programmatic(Kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace vidkv::dependent_launch
