// XLA FFI handlers for 2-D convolutions on oneDNN: NHWC x HWIO -> NHWC, float32, any strides
// and zero padding, no dilation or groups. Three passes, each its own target:
//   GenmodConvFwd        y  = conv(x, w)
//   GenmodConvBwdData    dx = conv^T(dy, w)   (the input gradient; dx's shape is the result's)
//   GenmodConvBwdWeights dw = conv^T(x, dy)   (the weight gradient; dw's shape is the result's)
// oneDNN picks the weights' layout (blocked where its direct kernels want it); weights are
// reordered from / to HWIO around each call, activations stay NHWC. Each call splits its batch
// into chunks that run single-threaded on XLA's own intra-op pool (the calling thread claims
// chunks too), each with a scratchpad of its thread's own; the weight gradient sums its chunks'.
// Built and loaded by genmod/nets/onednn.py; why: docs/benchmarks.md "Performance, round 9".
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

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
  dnnl::memory::desc scratch;                  // per call: chunks run the same primitive at once
};

// Executes with a scratchpad of this thread's own (oneDNN's default one is shared).
void execute(const Plan& p, dnnl::stream& s, std::unordered_map<int, dnnl::memory> args) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < p.scratch.get_size()) buf.resize(p.scratch.get_size());
  args.insert({DNNL_ARG_SCRATCHPAD, dnnl::memory(p.scratch, s.get_engine(), buf.data())});
  p.prim.execute(s, args);
}

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
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::convolution_forward::primitive_desc fwd(eng, dnnl::prop_kind::forward_training, alg, p->src,
                                                any, p->dst, strides, lo, hi, attr);
  if (pass == kFwd) {
    p->wei = fwd.weights_desc();
    p->scratch = fwd.scratchpad_desc();
    p->prim = dnnl::convolution_forward(fwd);
  } else if (pass == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc bd(eng, alg, p->src, any, p->dst, strides, lo,
                                                       hi, fwd, attr);
    p->wei = bd.weights_desc();
    p->scratch = bd.scratchpad_desc();
    p->prim = dnnl::convolution_backward_data(bd);
  } else {
    dnnl::convolution_backward_weights::primitive_desc bw(eng, alg, p->src, any, p->dst, strides,
                                                          lo, hi, fwd, attr);
    p->wei = bw.diff_weights_desc();
    p->scratch = bw.scratchpad_desc();
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

// oneDNN runs single-threaded inside each of XLA's own intra-op threads: an OpenMP team beside
// XLA's pool oversubscribed the cores (XLA's workers spin between ops, so OpenMP's second thread
// often started a timeslice late: 0.1 ms convolutions took 5-7 ms in the 8x8 net's step).
struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

// Chunks of the batch, claimed by the calling thread and by tasks on XLA's pool. The caller
// claims until none is left, so the call finishes even if no task ever starts.
struct Job {
  std::function<void(int64_t)> work;
  int64_t chunks;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mu;
  std::condition_variable cv;
  std::string error;
};

void drain(const std::shared_ptr<Job>& j) {
  OneThread one;
  for (int64_t i; (i = j->next.fetch_add(1)) < j->chunks;) {
    try {
      j->work(i);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(j->mu);
      j->error = e.what();
    }
    if (j->done.fetch_add(1) + 1 == j->chunks) {
      std::lock_guard<std::mutex> lock(j->mu);
      j->cv.notify_all();
    }
  }
}

ffi::Error run_chunks(ffi::ThreadPool pool, Pass pass, float* x, float* w, float* y, Dims xs,
                      Dims ws, Dims ys, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                      int64_t pr);

// No exception may leave an FFI handler: oneDNN's (a plan or a reorder outside the chunks, whose
// own errors drain() collects) become the call's error.
ffi::Error run(ffi::ThreadPool pool, Pass pass, float* x, float* w, float* y, Dims xs, Dims ws,
               Dims ys, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  try {
    return run_chunks(pool, pass, x, w, y, xs, ws, ys, sh, sw, pt, pb, pl, pr);
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("genmod oneDNN conv: ") + e.what());
  }
}

ffi::Error run_chunks(ffi::ThreadPool pool, Pass pass, float* x, float* w, float* y, Dims xs,
                      Dims ws, Dims ys, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                      int64_t pr) {
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4 || ws[2] != xs[3] || ws[3] != ys[3] ||
      xs[0] != ys[0] || sh < 1 || sw < 1 || ys[1] != (xs[1] + pt + pb - ws[0]) / sh + 1 ||
      ys[2] != (xs[2] + pl + pr - ws[1]) / sw + 1)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "genmod oneDNN conv: inconsistent shapes");
  const int64_t n = xs[0], chunks = std::max<int64_t>(1, std::min<int64_t>(n, 4 * pool.num_threads()));
  const int64_t x_img = xs[1] * xs[2] * xs[3], y_img = ys[1] * ys[2] * ys[3], w_size = ws[0] * ws[1] * ws[2] * ws[3];
  auto plan_for = [&](int64_t i0, int64_t i1) {
    return plan({i1 - i0, xs[1], xs[2], xs[3], ys[1], ys[2], ys[3], ws[0], ws[1], sh, sw, pt, pb, pl, pr, pass});
  };
  auto& eng = engine();
  std::vector<float> wei, partial;  // weights in oneDNN's layout; per-chunk weight gradients
  dnnl::memory::desc wei_desc;
  if (pass != kBwdWeights) {  // one reorder for all chunks
    OneThread one;
    auto p = plan_for(0, n / chunks);
    wei_desc = p->wei;
    if (p->wei != p->wei_hwio) {
      wei.resize(p->wei.get_size() / sizeof(float));
      dnnl::stream s(eng);
      dnnl::memory from(p->wei_hwio, eng, w), to(p->wei, eng, wei.data());
      p->from_hwio.execute(s, from, to);
    }
  } else {
    partial.resize((chunks - 1) * w_size);
  }
  auto job = std::make_shared<Job>();
  job->chunks = chunks;
  job->work = [&](int64_t c) {
    const int64_t i0 = n * c / chunks, i1 = n * (c + 1) / chunks;
    auto p = plan_for(i0, i1);
    dnnl::stream s(eng);
    dnnl::memory mx(p->src, eng, x + i0 * x_img), my(p->dst, eng, y + i0 * y_img);
    if (pass == kBwdWeights) {
      float* out = c == 0 ? w : partial.data() + (c - 1) * w_size;
      dnnl::memory mw_hwio(p->wei_hwio, eng, out);
      dnnl::memory mw = p->wei != p->wei_hwio ? dnnl::memory(p->wei, eng) : mw_hwio;
      execute(*p, s, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_WEIGHTS, mw}, {DNNL_ARG_DIFF_DST, my}});
      if (p->wei != p->wei_hwio) p->to_hwio.execute(s, mw, mw_hwio);
    } else {
      dnnl::memory mw;
      if (p->wei == wei_desc) {  // the layout reordered once above (or HWIO itself)
        mw = dnnl::memory(p->wei, eng, wei.empty() ? w : wei.data());
      } else if (p->wei == p->wei_hwio) {
        mw = dnnl::memory(p->wei, eng, w);
      } else {  // a chunk size for which oneDNN chose yet another layout
        dnnl::memory from(p->wei_hwio, eng, w);
        mw = dnnl::memory(p->wei, eng);
        p->from_hwio.execute(s, from, mw);
      }
      if (pass == kFwd)
        execute(*p, s, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, my}});
      else
        execute(*p, s, {{DNNL_ARG_DIFF_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_DST, my}});
    }
    s.wait();
  };
  for (int64_t c = 1; c < chunks; ++c) pool.Schedule([job] { drain(job); });
  drain(job);
  {
    std::unique_lock<std::mutex> lock(job->mu);
    job->cv.wait(lock, [&] { return job->done.load() == chunks; });
    if (!job->error.empty())
      return ffi::Error(ffi::ErrorCode::kInternal, "genmod oneDNN conv: " + job->error);
  }
  for (int64_t c = 1; pass == kBwdWeights && c < chunks; ++c)  // sum the chunks' weight gradients
    for (int64_t k = 0; k < w_size; ++k) w[k] += partial[(c - 1) * w_size + k];
  return ffi::Error::Success();
}

using In = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;
#define GEOMETRY int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr
#define GEOMETRY_ARGS sh, sw, pt, pb, pl, pr

ffi::Error Fwd(ffi::ThreadPool pool, In x, In w, Out y, GEOMETRY) {
  return run(pool, kFwd, x.typed_data(), w.typed_data(), y->typed_data(), x.dimensions(),
             w.dimensions(), y->dimensions(), GEOMETRY_ARGS);
}
ffi::Error BwdData(ffi::ThreadPool pool, In dy, In w, Out dx, GEOMETRY) {
  return run(pool, kBwdData, dx->typed_data(), w.typed_data(), dy.typed_data(), dx->dimensions(),
             w.dimensions(), dy.dimensions(), GEOMETRY_ARGS);
}
ffi::Error BwdWeights(ffi::ThreadPool pool, In x, In dy, Out dw, GEOMETRY) {
  return run(pool, kBwdWeights, x.typed_data(), dw->typed_data(), dy.typed_data(), x.dimensions(),
             dw->dimensions(), dy.dimensions(), GEOMETRY_ARGS);
}

}  // namespace

#define BIND(A, B)                                                                             \
  ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<A>().Arg<B>().Ret<In>().Attr<int64_t>("sh").Attr<int64_t>("sw")        \
      .Attr<int64_t>("pt").Attr<int64_t>("pb").Attr<int64_t>("pl").Attr<int64_t>("pr")
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenmodConvFwd, Fwd, BIND(In, In));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenmodConvBwdData, BwdData, BIND(In, In));
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenmodConvBwdWeights, BwdWeights, BIND(In, In));
