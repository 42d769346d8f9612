// XLA FFI handlers for 2-D convolutions on oneDNN: NHWC x HWIO -> NHWC, float32, any strides
// and zero padding, no dilation or groups. Three passes, each its own target:
//   GenmodConvFwd        y  = conv(x, w)
//   GenmodConvBwdData    dx = conv^T(dy, w)   (the input gradient; dx's shape is the result's)
//   GenmodConvBwdWeights dw = conv^T(x, dy)   (the weight gradient; dw's shape is the result's)
// oneDNN picks the weights' layout (blocked where its direct kernels want it); weights are
// reordered from / to HWIO around each call, activations stay NHWC. Built and loaded by
// genmod/nets/onednn.py; why it exists: docs/benchmarks.md "Performance, round 9".
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

enum Pass : int64_t { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

// n, h, w, ci, ho, wo, co, kh, kw, sh, sw, pad top, pad bottom, pad left, pad right, pass
using Key = std::array<int64_t, 16>;

struct Plan {
  dnnl::primitive prim;
  dnnl::memory::desc src, dst, wei, wei_hwio;  // wei: the layout oneDNN chose
  dnnl::reorder from_hwio, to_hwio;            // empty where wei == wei_hwio
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

std::shared_ptr<Plan> plan(const Key& k) {
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<Plan>> cache;  // one entry per shape and pass
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(k); it != cache.end()) return it->second;
  auto [n, h, w, ci, ho, wo, co, kh, kw, sh, sw, pt, pb, pl, pr, pass] = k;
  auto& eng = engine();
  auto p = std::make_shared<Plan>();
  p->src = dnnl::memory::desc({n, ci, h, w}, dt::f32, tag::nhwc);
  p->dst = dnnl::memory::desc({n, co, ho, wo}, dt::f32, tag::nhwc);
  p->wei_hwio = dnnl::memory::desc({co, ci, kh, kw}, dt::f32, tag::hwio);
  dnnl::memory::desc any({co, ci, kh, kw}, dt::f32, tag::any);
  dnnl::memory::dims strides{sh, sw}, lo{pt, pl}, hi{pb, pr};
  auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(eng, dnnl::prop_kind::forward_training, alg, p->src,
                                                any, p->dst, strides, lo, hi);
  if (pass == kFwd) {
    p->wei = fwd.weights_desc();
    p->prim = dnnl::convolution_forward(fwd);
  } else if (pass == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc bd(eng, alg, p->src, any, p->dst, strides, lo,
                                                       hi, fwd);
    p->wei = bd.weights_desc();
    p->prim = dnnl::convolution_backward_data(bd);
  } else {
    dnnl::convolution_backward_weights::primitive_desc bw(eng, alg, p->src, any, p->dst, strides,
                                                          lo, hi, fwd);
    p->wei = bw.diff_weights_desc();
    p->prim = dnnl::convolution_backward_weights(bw);
  }
  if (p->wei != p->wei_hwio) {
    dnnl::memory a(p->wei_hwio, eng, DNNL_MEMORY_NONE), b(p->wei, eng, DNNL_MEMORY_NONE);
    p->from_hwio = dnnl::reorder(a, b);
    p->to_hwio = dnnl::reorder(b, a);
  }
  cache[k] = p;
  return p;
}

using Dims = ffi::Span<const int64_t>;

ffi::Error run(Pass pass, void* x, void* w, void* y, Dims xs, Dims ws, Dims ys, int64_t sh,
               int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4 || ws[2] != xs[3] || ws[3] != ys[3] ||
      xs[0] != ys[0] || sh < 1 || sw < 1 || ys[1] != (xs[1] + pt + pb - ws[0]) / sh + 1 ||
      ys[2] != (xs[2] + pl + pr - ws[1]) / sw + 1)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "genmod oneDNN conv: inconsistent shapes");
  try {
    auto p = plan({xs[0], xs[1], xs[2], xs[3], ys[1], ys[2], ys[3], ws[0], ws[1], sh, sw, pt, pb, pl,
                   pr, pass});
    // One convolution at a time: XLA may start a layer's input and weight gradients at once, and
    // two OpenMP teams of all cores each would oversubscribe them.
    static std::mutex run_mu;
    std::lock_guard<std::mutex> lock(run_mu);
    auto& eng = engine();
    dnnl::stream s(eng);
    dnnl::memory mx(p->src, eng, x), my(p->dst, eng, y), mw_hwio(p->wei_hwio, eng, w);
    const bool reorder = p->wei != p->wei_hwio;
    dnnl::memory mw = reorder ? dnnl::memory(p->wei, eng) : mw_hwio;
    if (pass == kBwdWeights) {
      p->prim.execute(s, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_WEIGHTS, mw}, {DNNL_ARG_DIFF_DST, my}});
      if (reorder) p->to_hwio.execute(s, mw, mw_hwio);
    } else {
      if (reorder) p->from_hwio.execute(s, mw_hwio, mw);
      if (pass == kFwd)
        p->prim.execute(s, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, my}});
      else
        p->prim.execute(s, {{DNNL_ARG_DIFF_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_DST, my}});
    }
    s.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("genmod oneDNN conv: ") + e.what());
  }
  return ffi::Error::Success();
}

using In = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;
#define GEOMETRY int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr
#define GEOMETRY_ARGS sh, sw, pt, pb, pl, pr

ffi::Error Fwd(In x, In w, Out y, GEOMETRY) {
  return run(kFwd, x.untyped_data(), w.untyped_data(), y->untyped_data(), x.dimensions(),
             w.dimensions(), y->dimensions(), GEOMETRY_ARGS);
}
ffi::Error BwdData(In dy, In w, Out dx, GEOMETRY) {
  return run(kBwdData, dx->untyped_data(), w.untyped_data(), dy.untyped_data(), dx->dimensions(),
             w.dimensions(), dy.dimensions(), GEOMETRY_ARGS);
}
ffi::Error BwdWeights(In x, In dy, Out dw, GEOMETRY) {
  return run(kBwdWeights, x.untyped_data(), dw->untyped_data(), dy.untyped_data(), x.dimensions(),
             dw->dimensions(), dy.dimensions(), GEOMETRY_ARGS);
}

}  // namespace

#define BIND(A, B)                                                                             \
  ffi::Ffi::Bind().Arg<A>().Arg<B>().Ret<In>().Attr<int64_t>("sh").Attr<int64_t>("sw")        \
      .Attr<int64_t>("pt").Attr<int64_t>("pb").Attr<int64_t>("pl").Attr<int64_t>("pr")
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenmodConvFwd, Fwd, BIND(In, In));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenmodConvBwdData, BwdData, BIND(In, In));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenmodConvBwdWeights, BwdWeights, BIND(In, In));
