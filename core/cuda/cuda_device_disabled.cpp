// CPU-only build (VIDKV_ENABLE_CUDA=OFF): there is no CUDA backend, so there are no devices to use.
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"

namespace vidkv {

int cuda_device_count(std::string* why) {
  if (why) *why = "this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)";
  return 0;
}

std::string cuda_device_description(int index) { return "device " + std::to_string(index) + ": no CUDA backend in this build"; }

void cuda_check(int, const char* what) { VIDKV_THROW(NotSupportedError, what, ": this build has no CUDA backend"); }

}  // namespace vidkv
