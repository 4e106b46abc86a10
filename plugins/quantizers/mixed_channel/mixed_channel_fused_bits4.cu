// mixed_channel on CUDA, fused: the kernels for 4-bit uniform groups on the high channels (one translation unit per
// bit width, so that they compile side by side: mixed_channel_fused_kernels.cuh).
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused_kernels.cuh"

namespace vidkv::mixed_channel_fused::kernels {
VIDKV_MIXED_CHANNEL_FUSED_LAUNCHERS(, 4)
}  // namespace vidkv::mixed_channel_fused::kernels
