// Shared by the native kernels: how a dense tensor's flat storage order maps to channels (dim 1).
#pragma once

#include <ATen/ATen.h>

namespace snnconv {

// The flat storage order is blocks of `inner` elements of one channel (row-major) or rows of C channels
// (channels-last, or row-major with nothing after the channel dim). One value for all (a layer-wise
// parameter) is C = 1, inner = numel.
struct Plan {
  int64_t numel, C, inner;
  bool rows;  // storage is rows of C channels
};

inline bool channels_last_4d(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline Plan plan_of(const at::Tensor& x, int64_t param_numel) {
  const int64_t n = x.numel();
  if (param_numel == 1) return {n, 1, n, false};
  int64_t inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return {n, x.size(1), inner, channels_last_4d(x) || inner == 1};
}

// Same sizes and the same storage order (strides of size-1 dims do not matter): a kernel may walk both flat.
inline bool same_order(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  return true;
}

// A per-channel parameter of `x` (one value, or one per channel of dim 1), in a row-major or channels-last x.
inline void check_channel_param(const at::Tensor& x, const at::Tensor& param, const char* op) {
  TORCH_CHECK(x.device().is_cpu() && param.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(x.scalar_type() == param.scalar_type(), op, ": the tensor and its threshold must share a dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op, ": float32 or float64 only");
  TORCH_CHECK(x.is_contiguous() || channels_last_4d(x), op, ": needs a row-major or channels-last tensor");
  TORCH_CHECK(param.numel() == 1 || (x.dim() >= 2 && param.numel() == x.size(1)), op,
              ": threshold must be one value or one per channel (dim 1)");
}

}  // namespace snnconv
