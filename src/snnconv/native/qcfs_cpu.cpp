// Fused CPU kernels of the QCFS activation (seed 004 Eq. 15/17; SPEC §1), op snnconv::qcfs.
//
// Forward, one pass:  a = clip(floor(z·L/θ + φ), 0, L) · (θ/L), each operation rounded in the tensor's own
// dtype exactly as the PyTorch path rounds it (snnconv/functional/qcfs.py), so both give the same bits.
// Backward, one pass (straight-through, Eq. 17), with low = -φθ/L and high = θ - φθ/L:
//     ∂L/∂z = g where low < z < high, else 0
//     ∂L/∂θ = Σ ∂L/∂z·(a - z) / θ + Σ g·[z ≥ high]      (summed per channel for a channel-wise θ)
// θ sums: in the tensor's dtype within fixed blocks of <= 4096 elements, the block sums added in double in
// block order, so the bits do not depend on the thread count.
// Build flags (set by snnconv/native/__init__.py): -ffp-contract=off (no fused multiply-add, which would
// round differently from PyTorch's separate operations), -fno-trapping-math (lets the compiler vectorize
// floor and the selects; values are unchanged), -fopenmp (at::parallel_for, omp simd); never -ffast-math.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "layout.h"

#include <cmath>
#include <vector>

namespace {

using at::Tensor;
using snnconv::Plan;
using snnconv::plan_of;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements per θ partial sum: each is summed in the tensor's dtype (one running sum per SIMD lane, ≤ 512 terms
// each in float32), the block sums in double.
constexpr int64_t kBlock = 4096;

template <typename T>
struct Params {
  std::vector<T> theta, step, low, high;  // per channel
  Params(const Tensor& theta_t, int64_t levels, double shift) {
    Tensor th = theta_t.contiguous().view(-1);
    const T* p = th.data_ptr<T>();
    const T L = static_cast<T>(levels), sh = static_cast<T>(shift);
    for (int64_t c = 0; c < th.numel(); ++c) {
      const T t = p[c];
      theta.push_back(t);
      step.push_back(t / L);
      low.push_back((-sh * t) / L);
      high.push_back(t - (sh * t) / L);
    }
  }
};

template <typename T>
inline T level_value(T x, T L, T theta, T shift, T step) {
  T k = std::floor(x * L / theta + shift);
  k = k < T(0) ? T(0) : k;  // NaN stays NaN, as torch.clamp
  k = k > L ? L : k;
  return k * step;
}

template <typename T>
void forward_kernel(const T* z, T* out, const Plan& p, const Params<T>& q, T L, T sh) {
  if (p.C == 1) {
    const T th = q.theta[0], st = q.step[0];
    at::parallel_for(0, p.numel, 32768, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) out[i] = level_value(z[i], L, th, sh, st);
    });
  } else if (p.rows) {
    const T* th = q.theta.data();
    const T* st = q.step.data();
    at::parallel_for(0, p.numel / p.C, std::max<int64_t>(1, 32768 / p.C), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* zr = z + r * p.C;
        T* orow = out + r * p.C;
#pragma omp simd
        for (int64_t c = 0; c < p.C; ++c) orow[c] = level_value(zr[c], L, th[c], sh, st[c]);
      }
    });
  } else {
    at::parallel_for(0, p.numel / p.inner, std::max<int64_t>(1, 32768 / p.inner), [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        const int64_t c = blk % p.C;
        const T th = q.theta[c], st = q.step[c];
        const T* zb = z + blk * p.inner;
        T* ob = out + blk * p.inner;
#pragma omp simd
        for (int64_t j = 0; j < p.inner; ++j) ob[j] = level_value(zb[j], L, th, sh, st);
      }
    });
  }
}

// One run of the backward over [b, e) with one θ: writes ∂L/∂z, adds the two θ sums to r and s, block by block
// (vectorized: the simd reduction keeps one partial sum per lane, so the order depends only on the build, not
// the threads; a sum in double inside the loop would halve the vector width and double the backward's time).
template <typename T>
inline void grad_run(const T* g, const T* z, const T* a, T* gz, int64_t b, int64_t e, T lo, T hi, double& r,
                     double& s) {
  for (int64_t b0 = b; b0 < e; b0 += kBlock) {
    const int64_t e0 = std::min(e, b0 + kBlock);
    T ramp = 0, above = 0;
#pragma omp simd reduction(+ : ramp, above)
    for (int64_t i = b0; i < e0; ++i) {
      const T x = z[i], gi = g[i];
      const T v = (x > lo && x < hi) ? gi : T(0);
      gz[i] = v;
      ramp += v * (a[i] - x);
      above += x >= hi ? gi : T(0);
    }
    r += ramp;
    s += above;
  }
}

// θ sums per channel: ramp[c], above[c] (C = 1 for a layer-wise θ).
template <typename T>
void backward_kernel(const T* g, const T* z, const T* a, T* gz, const Plan& p, const Params<T>& q,
                     std::vector<double>& ramp, std::vector<double>& above) {
  ramp.assign(p.C, 0.0);
  above.assign(p.C, 0.0);
  if (p.C == 1) {
    const int64_t nb = (p.numel + kBlock - 1) / kBlock;
    std::vector<double> pr(nb, 0.0), pa(nb, 0.0);
    const T lo = q.low[0], hi = q.high[0];
    at::parallel_for(0, nb, 1, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        double r = 0.0, s = 0.0;
        grad_run(g, z, a, gz, blk * kBlock, std::min(p.numel, (blk + 1) * kBlock), lo, hi, r, s);
        pr[blk] = r;
        pa[blk] = s;
      }
    });
    for (int64_t blk = 0; blk < nb; ++blk) {
      ramp[0] += pr[blk];
      above[0] += pa[blk];
    }
  } else if (p.rows) {
    const int64_t rows = p.numel / p.C, rows_per = std::max<int64_t>(1, kBlock / p.C);
    const int64_t nb = (rows + rows_per - 1) / rows_per;
    std::vector<T> pr(nb * p.C, T(0)), pa(nb * p.C, T(0));
    const T *lows = q.low.data(), *highs = q.high.data();
    at::parallel_for(0, nb, 1, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        T* r = pr.data() + blk * p.C;
        T* s = pa.data() + blk * p.C;
        const int64_t end = std::min(rows, (blk + 1) * rows_per);
        for (int64_t row = blk * rows_per; row < end; ++row) {
          const T *gr = g + row * p.C, *zr = z + row * p.C, *ar = a + row * p.C;
          T* gzr = gz + row * p.C;
#pragma omp simd
          for (int64_t c = 0; c < p.C; ++c) {  // one sum per channel: vectorized across channels
            const T x = zr[c], gi = gr[c], lo = lows[c], hi = highs[c];
            const T v = (x > lo && x < hi) ? gi : T(0);
            gzr[c] = v;
            r[c] += v * (ar[c] - x);
            s[c] += x >= hi ? gi : T(0);
          }
        }
      }
    });
    for (int64_t blk = 0; blk < nb; ++blk)
      for (int64_t c = 0; c < p.C; ++c) {
        ramp[c] += pr[blk * p.C + c];
        above[c] += pa[blk * p.C + c];
      }
  } else {
    const int64_t nb = p.numel / p.inner;  // one partial sum per (n, c) plane
    std::vector<double> pr(nb, 0.0), pa(nb, 0.0);
    at::parallel_for(0, nb, std::max<int64_t>(1, kBlock / p.inner), [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        const int64_t c = blk % p.C, o = blk * p.inner;
        const T lo = q.low[c], hi = q.high[c];
        double r = 0.0, s = 0.0;
        grad_run(g, z, a, gz, o, o + p.inner, lo, hi, r, s);
        pr[blk] = r;
        pa[blk] = s;
      }
    });
    for (int64_t blk = 0; blk < nb; ++blk) {
      ramp[blk % p.C] += pr[blk];
      above[blk % p.C] += pa[blk];
    }
  }
}

void check_args(const Tensor& z, const Tensor& theta, int64_t levels) {
  snnconv::check_channel_param(z, theta, "snnconv::qcfs");
  TORCH_CHECK(levels >= 1, "snnconv::qcfs: levels must be >= 1");
}

Tensor forward_impl(const Tensor& z, const Tensor& theta, int64_t levels, double shift) {
  check_args(z, theta, levels);
  Tensor out = at::empty_like(z);  // same strides as a dense z
  const Plan p = plan_of(z, theta.numel());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "snnconv_qcfs_forward", [&] {
    const Params<scalar_t> q(theta, levels, shift);
    forward_kernel<scalar_t>(z.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p, q,
                             static_cast<scalar_t>(levels), static_cast<scalar_t>(shift));
  });
  return out;
}

std::vector<Tensor> backward_impl(const Tensor& grad_in, const Tensor& z, const Tensor& theta, const Tensor& out,
                                  int64_t levels, double shift) {
  // the kernel walks grad, z and a in one storage order: an upstream gradient laid out otherwise is copied
  const bool alike = snnconv::same_order(grad_in, z) && grad_in.scalar_type() == z.scalar_type();
  const Tensor grad = alike ? grad_in : at::empty_like(z).copy_(grad_in);
  Tensor grad_z = at::empty_like(z);
  Tensor grad_theta = at::empty_like(theta);
  const Plan p = plan_of(z, theta.numel());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "snnconv_qcfs_backward", [&] {
    const Params<scalar_t> q(theta, levels, shift);
    std::vector<double> ramp, above;
    backward_kernel<scalar_t>(grad.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                              grad_z.data_ptr<scalar_t>(), p, q, ramp, above);
    Tensor gt = grad_theta.view(-1);
    scalar_t* dst = gt.data_ptr<scalar_t>();
    for (int64_t c = 0; c < p.C; ++c) dst[c] = static_cast<scalar_t>(ramp[c] / q.theta[c] + above[c]);
  });
  return {grad_z, grad_theta};
}

class QCFSFunction : public torch::autograd::Function<QCFSFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& z, const Tensor& theta, int64_t levels, double shift) {
    Tensor out = forward_impl(z, theta, levels, shift);
    ctx->save_for_backward({z, theta, out});
    ctx->saved_data["levels"] = levels;
    ctx->saved_data["shift"] = shift;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto g = backward_impl(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["levels"].toInt(),
                           ctx->saved_data["shift"].toDouble());
    return {g[0], g[1], Tensor(), Tensor()};
  }
};

Tensor qcfs_op(const Tensor& z, const Tensor& theta, int64_t levels, double shift) {
  return QCFSFunction::apply(z, theta, levels, shift);
}

}  // namespace

TORCH_LIBRARY(snnconv, m) {
  m.def("qcfs(Tensor z, Tensor threshold, int levels, float shift) -> Tensor");
}

TORCH_LIBRARY_IMPL(snnconv, CompositeImplicitAutograd, m) { m.impl("qcfs", qcfs_op); }
