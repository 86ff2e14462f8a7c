// Fused CPU scan of the integrate-and-fire neuron (seed 004 Eq. 2-4; SPEC §1), op snnconv::if_scan_.
//
//     m(t) = v(t-1) + I(t),   s(t) = H(m(t) - θ) (ties fire),   out(t) = s(t)·θ,   v(t) = m(t) - out(t)
//
// The same operations in the same dtype as snnconv/functional/if_neuron.py's if_scan_values (s·θ is θ or 0,
// exactly), so outputs, potentials and counts are bit-identical to it. Time runs innermost over a block of
// neurons whose potentials stay in cache: each current is read once and each output written once, instead of
// five passes per step. Spike counts per step are summed as integers (exact), returned as float64.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "layout.h"

namespace {

using at::Tensor;
using snnconv::Plan;

constexpr int64_t kBlock = 2048;  // neurons per block: their potentials stay in L1 over the steps

// Steps of one run [b, e) of neurons sharing θ; adds each step's spike count to cnt[t].
template <typename T>
inline void scan_run(T* out, const T* cur, T* v, int64_t n, int64_t steps, int64_t b, int64_t e, T th,
                     int64_t* cnt) {
  for (int64_t t = 0; t < steps; ++t) {
    const T* I = cur + t * n;
    T* o = out + t * n;
    int64_t c = 0;
#pragma omp simd reduction(+ : c)
    for (int64_t i = b; i < e; ++i) {
      const T m = v[i] + I[i];
      const bool s = m >= th;
      const T x = s ? th : T(0);
      o[i] = x;
      v[i] = m - x;
      c += s;
    }
    cnt[t] += c;
  }
}

template <typename T>
void scan_kernel(T* out, const T* cur, T* v, const T* theta, int64_t steps, const Plan& p,
                 std::vector<int64_t>& counts) {
  const int64_t n = p.numel;
  int64_t nb, per;  // blocks, and neurons (C = 1 or planes) or rows (rows of C) per block
  if (p.C == 1) {
    per = kBlock;
    nb = (n + per - 1) / per;
  } else if (p.rows) {
    per = std::max<int64_t>(1, kBlock / p.C);
    nb = (n / p.C + per - 1) / per;
  } else {
    per = std::max<int64_t>(1, kBlock / p.inner);  // whole (n, c) planes
    nb = (n / p.inner + per - 1) / per;
  }
  std::vector<int64_t> partial(nb * steps, 0);
  at::parallel_for(0, nb, 1, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      int64_t* cnt = partial.data() + blk * steps;
      if (p.C == 1) {
        scan_run(out, cur, v, n, steps, blk * per, std::min(n, (blk + 1) * per), theta[0], cnt);
      } else if (p.rows) {
        const int64_t r0 = blk * per, r1 = std::min(n / p.C, (blk + 1) * per);
        for (int64_t t = 0; t < steps; ++t) {
          const T* I = cur + t * n;
          T* o = out + t * n;
          int64_t c = 0;
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t off = r * p.C;
#pragma omp simd reduction(+ : c)
            for (int64_t ch = 0; ch < p.C; ++ch) {
              const T m = v[off + ch] + I[off + ch];
              const bool s = m >= theta[ch];
              const T x = s ? theta[ch] : T(0);
              o[off + ch] = x;
              v[off + ch] = m - x;
              c += s;
            }
          }
          cnt[t] += c;
        }
      } else {
        const int64_t q1 = std::min(n / p.inner, (blk + 1) * per);
        for (int64_t q = blk * per; q < q1; ++q)
          scan_run(out, cur, v, n, steps, q * p.inner, (q + 1) * p.inner, theta[q % p.C], cnt);
      }
    }
  });
  counts.assign(steps, 0);
  for (int64_t blk = 0; blk < nb; ++blk)
    for (int64_t t = 0; t < steps; ++t) counts[t] += partial[blk * steps + t];
}

// out[T, ...] (may be `currents` itself), currents[T, ...], v[...] updated in place; returns counts[T] (float64).
Tensor if_scan(Tensor out, const Tensor& currents, Tensor v, const Tensor& threshold) {
  TORCH_CHECK(currents.dim() >= 2, "snnconv::if_scan_: currents must be [T, B, ...]");
  const int64_t steps = currents.size(0);
  const Tensor step0 = currents[0];
  snnconv::check_channel_param(step0, threshold, "snnconv::if_scan_");
  TORCH_CHECK((steps == 1 || currents.stride(0) == step0.numel()) && snnconv::same_order(out, currents) &&
                  snnconv::same_order(v, step0),
              "snnconv::if_scan_: out, currents and v must share one dense layout per step");
  TORCH_CHECK(out.scalar_type() == currents.scalar_type() && v.scalar_type() == currents.scalar_type(),
              "snnconv::if_scan_: out, currents and v must share a dtype");
  const Tensor theta = threshold.contiguous().view(-1);
  const snnconv::Plan p = snnconv::plan_of(step0, theta.numel());
  std::vector<int64_t> counts;
  AT_DISPATCH_FLOATING_TYPES(currents.scalar_type(), "snnconv_if_scan", [&] {
    scan_kernel<scalar_t>(out.data_ptr<scalar_t>(), currents.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                          theta.data_ptr<scalar_t>(), steps, p, counts);
  });
  Tensor result = at::empty({steps}, currents.options().dtype(at::kDouble));
  double* r = result.data_ptr<double>();
  for (int64_t t = 0; t < steps; ++t) r[t] = static_cast<double>(counts[t]);
  return result;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(snnconv, m) {
  m.def("if_scan_(Tensor(a!) out, Tensor currents, Tensor(b!) v, Tensor threshold) -> Tensor");
}

TORCH_LIBRARY_IMPL(snnconv, CPU, m) { m.impl("if_scan_", if_scan); }
