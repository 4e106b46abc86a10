// Names and versions of the HDF5 trace schema v1 (traces/SCHEMA.md is the normative description).
#pragma once

namespace vidkv::trace_schema {

inline constexpr const char* kSchemaName = "vidkv.trace";
inline constexpr int kSchemaVersion = 1;

// Root attributes.
inline constexpr const char* kAttrSchema = "schema";
inline constexpr const char* kAttrSchemaVersion = "schema_version";
inline constexpr const char* kAttrProducer = "producer";
inline constexpr const char* kAttrCreatedAt = "created_at";
inline constexpr const char* kAttrSource = "source";  // "model" or "synthetic"
inline constexpr const char* kAttrModelId = "model_id";
inline constexpr const char* kAttrModelFamily = "model_family";
inline constexpr const char* kAttrDtype = "dtype";

// /model attributes.
inline constexpr const char* kModelGroup = "/model";
inline constexpr const char* kAttrNumLayers = "num_layers";
inline constexpr const char* kAttrNumKvHeads = "num_kv_heads";
inline constexpr const char* kAttrNumQueryHeads = "num_query_heads";
inline constexpr const char* kAttrHeadDim = "head_dim";
inline constexpr const char* kAttrHiddenSize = "hidden_size";
inline constexpr const char* kAttrRope = "rope";
// Rotary parameters, optional (meaningful with rope = pre; core/rotary.h, SCHEMA.md "Rotary parameters").
inline constexpr const char* kAttrRopeTheta = "rope_theta";
inline constexpr const char* kAttrRopeScaling = "rope_scaling";          // "none" (default) or "linear"
inline constexpr const char* kAttrRopeScalingFactor = "rope_scaling_factor";
inline constexpr const char* kAttrRopePairing = "rope_pairing";          // "half" (default) or "interleaved"

// Datasets.
inline constexpr const char* kTokensModality = "/tokens/modality";
inline constexpr const char* kTokensPosition = "/tokens/position";
inline constexpr const char* kTokensFrame = "/tokens/frame";
inline constexpr const char* kTokensPatch = "/tokens/patch";
inline constexpr const char* kTokensIds = "/tokens/ids";
inline constexpr const char* kEmbeddings = "/embeddings";
inline constexpr const char* kQueryPositions = "/queries/positions";
inline constexpr const char* kLayersGroup = "/layers";

}  // namespace vidkv::trace_schema
