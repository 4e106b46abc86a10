#include <string>

#include "catch.h"
#include "vidkv/core/cuda/cuda_device.h"

TEST_CASE("a CUDA device is visible and described", "[cuda]") {
  std::string why;
  const int n = vidkv::cuda_device_count(&why);
  if (n == 0) VIDKV_SKIP("no CUDA device: " << why);
  const std::string d = vidkv::cuda_device_description(0);
  INFO(d);
  CHECK(d.find("sm_") != std::string::npos);
}
