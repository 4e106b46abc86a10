// How many kernel launches made to wait late (dependent_launch.cuh's GridOrder(true): the first kernel of a call made
// with Execution::after_independent_kernel, execution.h) this process has made: one counter for every plugin's
// kernels, so that tests can tell that a call took the promise. Host only, no CUDA headers; in CUDA builds only.
#pragma once

#include <cstdint>

namespace vidkv::dependent_launch {

// Called by the launching code once per kernel that it launches with a late wait (thread-safe). On a device or build
// without programmatic dependent launch such a kernel runs as a plain launch all the same (its wait at its end does
// nothing) and is counted all the same.
void count_late_wait();

// Launches counted by count_late_wait since the process started.
std::int64_t late_wait_launches();

}  // namespace vidkv::dependent_launch
