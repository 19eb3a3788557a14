// Native L-BFGS (docs/lbfgs.md). Device-resident vectors: x_k, g_k, the trial x_t, g_t, the
// projected gradient pg, the direction d and the history rows S, Y ((m + 1) rows of stride ld).
// The host keeps only scalars: the Gram entries sᵢᵀyⱼ and yᵢᵀyⱼ, the dots of pg with every row,
// counters and the Moré–Thuente state. Per iteration the device runs: one combine (the direction
// from the two-loop coefficients), one step + one directional derivative per trial, one update
// (s, y, pg) and one batched dot of (s, y, pg) with all rows; O(m) doubles cross each way.
#include "preimage/lbfgs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/core/backend.h"
#include "engine/core/lbfgs_impl.h"
#include "preimage/error.h"

namespace preimage {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::None:
      return "none";
    case StopReason::GradientTol:
      return "gradient tolerance";
    case StopReason::FunctionTol:
      return "relative function change";
    case StopReason::MaxIterations:
      return "max iterations";
    case StopReason::MaxEvaluations:
      return "max evaluations";
    case StopReason::LineSearchFailed:
      return "line search failed";
    case StopReason::NonFinite:
      return "non-finite objective";
    case StopReason::Interrupted:
      return "interrupted";
  }
  return "unknown";
}

Lbfgs::Lbfgs(Device device, size_t n, LbfgsOptions options)
    : impl_(std::make_unique<Impl>(device, n, options)) {}
Lbfgs::~Lbfgs() = default;
Lbfgs::Lbfgs(Lbfgs&&) noexcept = default;
Lbfgs& Lbfgs::operator=(Lbfgs&&) noexcept = default;

const LbfgsOptions& Lbfgs::options() const {
  return impl_->opt;
}

void Lbfgs::set_options(const LbfgsOptions& o) {
  check_options(o);
  Impl& s = *impl_;
  if (s.started)
    require(o.history == s.opt.history && o.bounded == s.opt.bounded &&
                (!o.bounded || (o.lower == s.opt.lower && o.upper == s.opt.upper)),
            "L-BFGS: history and bounds cannot change while a state is held (reset() first)");
  const bool realloc = o.history != s.opt.history;
  s.opt = o;
  if (realloc) s.alloc_vectors();
}

void Lbfgs::reset() {
  impl_->started = false;
  impl_->reset_history();
}
bool Lbfgs::has_state() const {
  return impl_->started;
}
void Lbfgs::set_user_blob(std::string blob) {
  impl_->blob = std::move(blob);
}
const std::string& Lbfgs::user_blob() const {
  return impl_->blob;
}

LbfgsResult Lbfgs::minimize(Tensor& x, const Objective_fn& fn,
                            const std::function<bool(const IterationInfo&)>& on_iteration) {
  Impl& s = *impl_;
  require(x.numel() == s.n, "L-BFGS: x has " + std::to_string(x.numel()) +
                                " elements, the solver was made for " + std::to_string(s.n));
  require(x.device() == s.device, std::string("L-BFGS: x is on ") + device_name(x.device()) +
                                      ", the solver on " + device_name(s.device));
  LbfgsResult res;
  auto finish = [&](StopReason r, std::string msg) {
    res.reason = r;
    res.message = std::move(msg);
    res.f = s.f;
    res.gnorm = s.pg_inf;
    res.iterations = s.iteration;
    res.evaluations = s.evaluations;
    res.rollbacks = s.rollbacks;
    res.skipped_updates = s.skipped;
    // Converged or failed: the next minimize() starts afresh. Limits and interruptions keep
    // the state so that a later call (or a checkpoint) continues.
    if (r != StopReason::MaxIterations && r != StopReason::MaxEvaluations &&
        r != StopReason::Interrupted)
      s.started = false;
    return res;
  };

  if (!s.started) {
    s.xshape = x.shape();
    s.be->copy(s.xk.data(), x.data(), s.n);
    if (s.opt.bounded)  // P(x0): fmaf(0, x, x) = x, then the clamp
      s.be->lbfgs_step(s.xk.data(), s.xk.data(), 0.0, s.opt.lower, s.opt.upper, true, s.xk.data(),
                       s.n);
    require(finite(s.be->sum_squares(s.xk.data(), s.n)),
            "L-BFGS: the initial x contains NaN or Inf");
    s.iteration = s.evaluations = s.rollbacks = s.skipped = 0;
    s.have_prev = false;
    s.after_rollback = false;
    s.last_step = 0;
    s.last_ls_evals = 0;
    s.reset_history();
    s.f = fn(s.view(s.xk), s.view(s.gk));
    s.evaluations = 1;
    double o[3];
    s.be->lbfgs_project_grad(s.xk.data(), s.gk.data(), s.opt.lower, s.opt.upper, s.opt.bounded,
                             s.pg.data(), s.n, o);
    if (!finite(s.f) || o[2] > 0) {
      s.pg_inf = o[0];
      return finish(StopReason::NonFinite, "NaN/Inf in f or g at the initial x");
    }
    s.pg_inf = s.pg0_inf = o[0];
    s.started = true;
    s.be->copy(x.data(), s.xk.data(), s.n);
  } else {
    require(x.shape().numel() == s.xshape.numel(), "L-BFGS: x shape changed");
    s.xshape = x.shape();
    s.be->copy(x.data(), s.xk.data(), s.n);
  }

  for (;;) {
    std::string msg;
    StopReason r = s.check_stop(msg);
    if (r != StopReason::None) return finish(r, msg);
    r = s.iterate(fn, msg);
    if (r != StopReason::None) return finish(r, msg);
    s.be->copy(x.data(), s.xk.data(), s.n);
    if (on_iteration && !on_iteration(s.info()))
      return finish(StopReason::Interrupted, "stopped by the iteration callback");
  }
}

}  // namespace preimage
