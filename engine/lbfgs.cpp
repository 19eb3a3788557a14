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

#include "engine/backend.h"
#include "engine/h5_util.h"
#include "engine/lbfgs_line_search.h"
#include "preimage/atomic_file.h"
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

namespace {

using detail::LineSearchTask;
using detail::MoreThuente;

constexpr double kStpMax = 1e10;
// Curvature constant of the line search along projected steepest descent (first iteration, after
// a reset): no curvature information sizes that step, so it is searched to near the line minimum
// (|φ'(t)| ≤ 0.1·|φ'(0)|, which also meets the strong Wolfe conditions at c2 = 0.9). Its pair
// (s, y) then sets γ for the first quasi-Newton step (docs/lbfgs.md).
constexpr double kC2Steepest = 0.1;
constexpr int kMaxHistory = 1024;
constexpr const char* kFormat = "preimage-lbfgs-checkpoint";
constexpr int64_t kFormatVersion = 1;

bool finite(double v) {
  return std::isfinite(v);
}

void check_options(const LbfgsOptions& o) {
  require(o.history >= 1 && o.history <= kMaxHistory, "L-BFGS: history must be in 1.." +
                                                          std::to_string(kMaxHistory) + ", got " +
                                                          std::to_string(o.history));
  require(o.max_iterations >= 0, "L-BFGS: max_iterations must be >= 0");
  require(o.max_evaluations >= 0, "L-BFGS: max_evaluations must be >= 0");
  require(o.gtol >= 0 && o.ftol >= 0, "L-BFGS: gtol and ftol must be >= 0");
  require(o.c1 > 0 && o.c1 < o.c2 && o.c2 < 1, "L-BFGS: need 0 < c1 < c2 < 1");
  require(o.xtol >= 0, "L-BFGS: xtol must be >= 0");
  require(o.max_line_search >= 1, "L-BFGS: max_line_search must be >= 1");
  require(o.max_nonfinite >= 1, "L-BFGS: max_nonfinite must be >= 1");
  require(o.skip_eps >= 0, "L-BFGS: skip_eps must be >= 0");
  require(!o.bounded || (std::isfinite(o.lower) && std::isfinite(o.upper) && o.lower < o.upper),
          "L-BFGS: bounds need finite lower < upper");
}

int max_evaluations(const LbfgsOptions& o) {
  if (o.max_evaluations > 0) return o.max_evaluations;
  const double e = std::max(2.5 * o.max_iterations, o.max_iterations + 20.0);
  return int(std::min(e, double(std::numeric_limits<int>::max())));
}

enum class Search { Accepted, Failed, NonFinite, MaxEvaluations };

}  // namespace

struct Lbfgs::Impl {
  Device device;
  Backend* be;
  size_t n, ld;
  LbfgsOptions opt;
  Tensor xk, gk, xt, gt, pg, d, S, Y;

  // ---- state (everything below goes into a checkpoint) ----
  bool started = false;
  Shape xshape;
  double f = 0, f_prev = 0;
  bool have_prev = false;
  double pg_inf = 0, pg0_inf = 0;
  int iteration = 0, evaluations = 0, rollbacks = 0, skipped = 0;
  double last_step = 0;
  int last_ls_evals = 0;
  bool after_rollback = false;  // the last search ended in a rollback; cleared on acceptance
  double nonfinite_len = 0;     // ‖t·d‖ of the last non-finite trial (caps the retry)
  // History: physical rows [0, rows) of S and Y; `order` lists the pairs in use, oldest first;
  // `spare` is the row outside the history once it is full (-1 before).
  std::vector<int> order;
  int rows = 0, spare = -1;
  std::vector<double> sy, yy;    // (m+1)² by physical row: sᵢᵀyⱼ, yᵢᵀyⱼ
  std::vector<double> pgs, pgy;  // pgᵀSᵣ, pgᵀYᵣ for the current pg
  MoreThuente ls;
  std::string blob;

  // ---- scratch ----
  std::vector<double> coef, dots;

  Impl(Device dev, size_t count, const LbfgsOptions& o)
      : device(dev), be(&backend(dev)), n(count), ld((count + 15) / 16 * 16), opt(o) {
    check_options(opt);
    require(n > 0, "L-BFGS: the problem size n must be > 0");
    alloc_vectors();
  }

  void alloc_vectors() {
    const Shape v{1, 1, 1, int(n)};
    xk = Tensor(v, device);
    gk = Tensor(v, device);
    xt = Tensor(v, device);
    gt = Tensor(v, device);
    pg = Tensor(v, device);
    d = Tensor(v, device);
    const int m1 = opt.history + 1;
    S = Tensor::zeros({1, 1, m1, int(ld)}, device);
    Y = Tensor::zeros({1, 1, m1, int(ld)}, device);
    sy.assign(size_t(m1) * m1, 0.0);
    yy.assign(size_t(m1) * m1, 0.0);
    pgs.assign(m1, 0.0);
    pgy.assign(m1, 0.0);
  }

  int m() const { return opt.history; }
  int m1() const { return opt.history + 1; }
  float* row_s(int r) { return S.data() + size_t(r) * ld; }
  float* row_y(int r) { return Y.data() + size_t(r) * ld; }
  View view(Tensor& t) const { return View{t.data(), xshape, device}; }

  void reset_history() {
    order.clear();
    rows = 0;
    spare = -1;
  }

  // ---- the direction: two-loop recursion in coefficient space ----
  // d = −H·pg with H the L-BFGS inverse Hessian of the pairs in `order` (H₀ = γI), as
  // coefficients of pg (= g on the free variables), Sᵣ and Yᵣ; the device forms the sum.
  void direction(bool steepest, double* out) {
    const int k = steepest ? 0 : int(order.size());
    const int R = k ? rows : 0;
    coef.assign(size_t(2 * R + 1), 0.0);
    if (k == 0) {
      coef[0] = 1.0;
    } else {
      const int M = m1();
      std::vector<double> alpha(k), cs(k, 0.0), cy(k, 0.0);
      for (int i = k - 1; i >= 0; --i) {
        const int p = order[i];
        double sq = pgs[p];
        for (int j = i + 1; j < k; ++j) sq += cy[j] * sy[size_t(p) * M + order[j]];
        alpha[i] = sq / sy[size_t(p) * M + p];
        cy[i] = -alpha[i];
      }
      const int newest = order[k - 1];
      const double gamma = sy[size_t(newest) * M + newest] / yy[size_t(newest) * M + newest];
      const double cv = gamma;
      for (double& c : cy) c *= gamma;
      for (int i = 0; i < k; ++i) {
        const int p = order[i];
        double yr = cv * pgy[p];
        for (int j = 0; j < k; ++j) yr += cy[j] * yy[size_t(p) * M + order[j]];
        for (int l = 0; l < i; ++l) yr += cs[l] * sy[size_t(order[l]) * M + p];
        const double beta = yr / sy[size_t(p) * M + p];
        cs[i] += alpha[i] - beta;
      }
      for (int i = 0; i < k; ++i) {
        coef[order[i]] = cs[i];
        coef[R + order[i]] = cy[i];
      }
      coef[2 * R] = cv;
    }
    be->lbfgs_combine(S.data(), Y.data(), ld, R, coef.data(), xk.data(), gk.data(), opt.lower,
                      opt.upper, opt.bounded, d.data(), n, out);
  }

  // ---- one projected Moré–Thuente line search along d from x_k ----
  Search line_search(const Objective_fn& fn, double gtd, double t0, double dnorm, bool steepest) {
    ls.ftol = opt.c1;
    ls.gtol = steepest ? std::min(opt.c2, kC2Steepest) : opt.c2;
    ls.xtol = opt.xtol;
    ls.stpmin = 0;
    ls.stpmax = std::max(kStpMax, t0);
    ls.start(f, gtd, t0);
    last_ls_evals = 0;
    int bad_streak = 0;
    const int max_eval = max_evaluations(opt);
    for (;;) {
      if (evaluations >= max_eval) return Search::MaxEvaluations;
      const double t = ls.step();
      if (!(t > 0) || !finite(t)) return Search::Failed;
      be->lbfgs_step(xk.data(), d.data(), t, opt.lower, opt.upper, opt.bounded, xt.data(), n);
      const double ft = fn(view(xt), view(gt));
      ++evaluations;
      ++last_ls_evals;
      double dd[2];
      be->lbfgs_dir_deriv(xk.data(), d.data(), gt.data(), t, opt.lower, opt.upper, opt.bounded, n,
                          dd);
      if (!finite(ft) || dd[1] > 0 || !finite(dd[0])) {
        // Backtrack: restart the search at half this step and never go beyond it again.
        nonfinite_len = t * dnorm;
        if (++bad_streak >= opt.max_nonfinite) return Search::NonFinite;
        if (last_ls_evals >= opt.max_line_search) return Search::Failed;
        ls.stpmax = 0.5 * t;
        ls.start(f, gtd, 0.5 * t);
        continue;
      }
      bad_streak = 0;
      const LineSearchTask task = ls.next(ft, dd[0]);
      if (task == LineSearchTask::Converged) return accept(t, ft);
      if (task != LineSearchTask::Evaluate) {
        // Warnings end the search at the evaluated step, as in L-BFGS-B, if f did not rise.
        if (task != LineSearchTask::Error && ft <= f) return accept(t, ft);
        return Search::Failed;
      }
      if (last_ls_evals >= opt.max_line_search) return Search::Failed;
    }
  }

  // Physical row that receives the next pair.
  int staging_row() const {
    if (int(order.size()) < m()) return rows;  // no spare before the history is full
    return rows == m() ? m() : spare;
  }

  Search accept(double t, double ft) {
    const int stg = staging_row();
    double u[5];
    be->lbfgs_update(xk.data(), gk.data(), xt.data(), gt.data(), opt.lower, opt.upper, opt.bounded,
                     row_s(stg), row_y(stg), pg.data(), n, u);
    std::swap(xk, xt);
    std::swap(gk, gt);
    f_prev = f;
    f = ft;
    have_prev = true;
    pg_inf = u[3];
    last_step = t;
    after_rollback = false;
    const double s_y = u[0], y_y = u[1];
    const int M = m1();
    if (finite(s_y) && finite(y_y) && y_y > 0 && s_y > opt.skip_eps * y_y) {
      const bool full = int(order.size()) == m();
      if (stg == rows) ++rows;
      int evicted = -1;
      if (full) {
        evicted = order.front();
        order.erase(order.begin());
      }
      order.push_back(stg);
      spare = evicted;
      const int R = rows;
      dots.assign(size_t(6) * R, 0.0);
      be->lbfgs_dots(S.data(), Y.data(), ld, R, spare, row_s(stg), row_y(stg), pg.data(), n,
                     dots.data());
      for (int r = 0; r < R; ++r) {
        if (r == spare) continue;
        sy[size_t(stg) * M + r] = dots[size_t(R) + r];      // s_newᵀ Y_r
        sy[size_t(r) * M + stg] = dots[size_t(2 * R) + r];  // y_newᵀ S_r
        yy[size_t(stg) * M + r] = yy[size_t(r) * M + stg] = dots[size_t(3 * R) + r];
        pgs[r] = dots[size_t(4 * R) + r];
        pgy[r] = dots[size_t(5 * R) + r];
      }
    } else {
      ++skipped;
      refresh_pg_dots();
    }
    return Search::Accepted;
  }

  // pgᵀSᵣ, pgᵀYᵣ for the rows in use (after pg changed without a new pair).
  void refresh_pg_dots() {
    if (order.empty()) return;
    dots.assign(size_t(2) * rows, 0.0);
    be->lbfgs_dots(S.data(), Y.data(), ld, rows, spare, pg.data(), nullptr, nullptr, n,
                   dots.data());
    for (int r = 0; r < rows; ++r) {
      pgs[r] = dots[r];
      pgy[r] = dots[size_t(rows) + r];
    }
  }

  // One iteration; StopReason::None when a step was accepted.
  StopReason iterate(const Objective_fn& fn, std::string& message) {
    for (;;) {
      const bool steepest = order.empty();
      double o[3];
      direction(steepest, o);
      const double gtd = o[0], dnorm = std::sqrt(o[1]);
      if (!(gtd < 0) || !finite(gtd) || o[2] > 0 || !(dnorm > 0)) {
        if (!steepest) {
          reset_history();
          continue;
        }
        message = "the projected steepest-descent direction is not a descent direction";
        return StopReason::LineSearchFailed;
      }
      double t0 = steepest ? std::min(1.0 / dnorm, kStpMax) : 1.0;
      if (after_rollback) t0 = std::min(t0, 0.5 * nonfinite_len / dnorm);
      switch (line_search(fn, gtd, t0, dnorm, steepest)) {
        case Search::Accepted:
          ++iteration;
          return StopReason::None;
        case Search::MaxEvaluations:
          message = "reached " + std::to_string(evaluations) + " evaluations";
          return StopReason::MaxEvaluations;
        case Search::Failed:
          if (!steepest) {
            reset_history();  // as L-BFGS-B: retry once along steepest descent
            continue;
          }
          message = "no acceptable step along the projected steepest-descent direction (f = " +
                    std::to_string(f) + "; converged to the precision of f and g?)";
          return StopReason::LineSearchFailed;
        case Search::NonFinite:
          ++rollbacks;
          if (after_rollback) {
            message = "NaN/Inf in f or g again after rolling back to the last good iterate";
            return StopReason::NonFinite;
          }
          after_rollback = true;
          reset_history();  // x_k is the last good iterate: drop the trial and the history
          continue;
      }
    }
  }

  StopReason check_stop(std::string& message) const {
    char buf[200];
    if (pg_inf <= opt.gtol * pg0_inf) {
      std::snprintf(buf, sizeof buf, "‖pg‖∞ = %.3g <= gtol %.3g × ‖pg0‖∞ %.3g", pg_inf, opt.gtol,
                    pg0_inf);
      message = buf;
      return StopReason::GradientTol;
    }
    if (have_prev &&
        std::fabs(f_prev - f) <= opt.ftol * std::max(std::fabs(f_prev), std::fabs(f))) {
      std::snprintf(buf, sizeof buf, "|Δf| = %.3g <= ftol %.3g × |f| %.3g", std::fabs(f_prev - f),
                    opt.ftol, std::max(std::fabs(f_prev), std::fabs(f)));
      message = buf;
      return StopReason::FunctionTol;
    }
    if (iteration >= opt.max_iterations) {
      message = "reached " + std::to_string(iteration) + " iterations";
      return StopReason::MaxIterations;
    }
    if (evaluations >= max_evaluations(opt)) {
      message = "reached " + std::to_string(evaluations) + " evaluations";
      return StopReason::MaxEvaluations;
    }
    return StopReason::None;
  }

  IterationInfo info() const {
    IterationInfo i;
    i.iteration = iteration;
    i.evaluations = evaluations;
    i.f = f;
    i.gnorm = pg_inf;
    i.gnorm0 = pg0_inf;
    i.step = last_step;
    i.line_search_evals = last_ls_evals;
    i.history = int(order.size());
    i.rollbacks = rollbacks;
    return i;
  }

  // ---- checkpoints ----
  void save(const std::string& path, const Tensor& x) const;
  void load(const std::string& path, Tensor& x);
};

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

// ---- checkpoints ---------------------------------------------------------------------------

namespace {

std::vector<float> to_host(Backend* be, const float* p, size_t count) {
  std::vector<float> v(count);
  be->copy_to_host(v.data(), p, count);
  return v;
}

}  // namespace

void Lbfgs::Impl::save(const std::string& path, const Tensor& x) const {
  require(x.numel() == n, "L-BFGS checkpoint '" + path + "': x has " + std::to_string(x.numel()) +
                              " elements, expected " + std::to_string(n));
  write_atomically(path, [&](const std::string& tmp) {
    h5::File file = h5::File::create(tmp, "L-BFGS checkpoint '" + path + "'");
    const Shape shp = started ? xshape : x.shape();
    file.write_attr_string("/", "format", kFormat);
    file.write_attr_int64s("/", "version", {kFormatVersion});
    file.write_attr_int64s("/", "n", {int64_t(n)});
    file.write_attr_int64s("/", "x_shape", {shp.n, shp.c, shp.h, shp.w});
    file.write_attr_string("/", "device", device_name(device));

    file.create_group("/options");
    file.write_attr_int64s("/options", "ints",
                           {opt.history, opt.max_iterations, opt.max_evaluations,
                            opt.max_line_search, opt.max_nonfinite, opt.bounded ? 1 : 0});
    file.write_attr_doubles("/options", "doubles",
                            {opt.gtol, opt.ftol, opt.c1, opt.c2, opt.xtol, opt.skip_eps,
                             double(opt.lower), double(opt.upper)});

    file.create_group("/state");
    file.write_attr_int64s("/state", "ints",
                           {started ? 1 : 0, iteration, evaluations, rollbacks, skipped,
                            have_prev ? 1 : 0, after_rollback ? 1 : 0, last_ls_evals, rows, spare});
    file.write_attr_doubles("/state", "doubles",
                            {f, f_prev, pg_inf, pg0_inf, last_step, nonfinite_len});

    const std::vector<float> xv = started ? to_host(be, xk.data(), n) : x.to_vector();
    file.write("/x", xv.data(), {int64_t(n)});
    if (started) {
      const std::vector<float> gv = to_host(be, gk.data(), n);
      file.write("/g", gv.data(), {int64_t(n)});
      std::vector<int64_t> ord(order.begin(), order.end());
      file.write("/history/order", ord.data(), {int64_t(ord.size())});
      if (rows > 0) {
        std::vector<float> buf(size_t(rows) * n);
        for (const auto& [name, mat] : {std::pair{"S", &S}, std::pair{"Y", &Y}}) {
          for (int r = 0; r < rows; ++r)
            be->copy_to_host(buf.data() + size_t(r) * n, mat->data() + size_t(r) * ld, n);
          file.write(std::string("/history/") + name, buf.data(), {rows, int64_t(n)});
        }
      }
      const int64_t M = m1();
      file.write("/history/sy", sy.data(), {M, M});
      file.write("/history/yy", yy.data(), {M, M});
      file.write("/history/pgs", pgs.data(), {M});
      file.write("/history/pgy", pgy.data(), {M});

      file.create_group("/line_search");
      file.write_attr_doubles("/line_search", "doubles",
                              {ls.ftol, ls.gtol, ls.xtol, ls.stpmin, ls.stpmax, ls.ginit, ls.gtest,
                               ls.gx, ls.gy, ls.finit, ls.fx, ls.fy, ls.stx, ls.sty, ls.stmin,
                               ls.stmax, ls.width, ls.width1, ls.stp});
      file.write_attr_int64s("/line_search", "ints",
                             {ls.brackt ? 1 : 0, ls.stage, int64_t(ls.task)});
    }
    if (!blob.empty()) {
      std::vector<int64_t> bytes(blob.size());
      for (size_t i = 0; i < blob.size(); ++i) bytes[i] = static_cast<unsigned char>(blob[i]);
      file.write("/user_blob", bytes.data(), {int64_t(bytes.size())});
    }
    file.close();
  });
}

void Lbfgs::Impl::load(const std::string& path, Tensor& x) {
  h5::File file = h5::File::open(path, "L-BFGS checkpoint '" + path + "'");
  if (!file.has_attr("/", "format") || file.read_attr_string("/", "format") != kFormat)
    file.fail("not an L-BFGS checkpoint (attribute /format is not '" + std::string(kFormat) + "')");
  const auto version = file.read_attr_int64s("/", "version");
  if (version.size() != 1 || version[0] != kFormatVersion)
    file.fail("unsupported checkpoint version (expected " + std::to_string(kFormatVersion) + ")");
  const auto nn = file.read_attr_int64s("/", "n");
  if (nn.size() != 1 || size_t(nn[0]) != n)
    file.fail("checkpoint is for n = " + (nn.empty() ? std::string("?") : std::to_string(nn[0])) +
              ", this solver has n = " + std::to_string(n));
  const auto shp = file.read_attr_int64s("/", "x_shape");
  if (shp.size() != 4) file.fail("attribute /x_shape must have 4 values");
  const Shape saved_shape{int(shp[0]), int(shp[1]), int(shp[2]), int(shp[3])};
  if (saved_shape.numel() != n) file.fail("attribute /x_shape does not match n");

  const auto oi = file.read_attr_int64s("/options", "ints");
  const auto od = file.read_attr_doubles("/options", "doubles");
  if (oi.size() != 6 || od.size() != 8) file.fail("/options has the wrong number of values");
  LbfgsOptions o;
  o.history = int(oi[0]);
  o.max_iterations = int(oi[1]);
  o.max_evaluations = int(oi[2]);
  o.max_line_search = int(oi[3]);
  o.max_nonfinite = int(oi[4]);
  o.bounded = oi[5] != 0;
  o.gtol = od[0];
  o.ftol = od[1];
  o.c1 = od[2];
  o.c2 = od[3];
  o.xtol = od[4];
  o.skip_eps = od[5];
  o.lower = float(od[6]);
  o.upper = float(od[7]);
  if (o.history != opt.history)
    file.fail("checkpoint has history " + std::to_string(o.history) + ", this solver " +
              std::to_string(opt.history));
  try {
    check_options(o);
  } catch (const Error& e) {
    file.fail(std::string("bad options: ") + e.what());
  }

  const auto si = file.read_attr_int64s("/state", "ints");
  const auto sd = file.read_attr_doubles("/state", "doubles");
  if (si.size() != 10 || sd.size() != 6) file.fail("/state has the wrong number of values");
  const bool st = si[0] != 0;
  const int M = o.history + 1;
  std::vector<float> xv(n), gv;
  file.check_dataset("/x", h5::Kind::Float, {int64_t(n)}, "float32");
  file.read("/x", xv.data(), n);
  std::vector<int64_t> ord;
  std::vector<float> sbuf, ybuf;
  std::vector<double> sy2, yy2, pgs2, pgy2;
  const int rows2 = int(si[8]), spare2 = int(si[9]);
  if (st) {
    gv.resize(n);
    file.check_dataset("/g", h5::Kind::Float, {int64_t(n)}, "float32");
    file.read("/g", gv.data(), n);
    if (rows2 < 0 || rows2 > M || spare2 < -1 || spare2 >= std::max(rows2, 1))
      file.fail("/state rows/spare out of range");
    ord = file.read_vector<int64_t>("/history/order");
    if (int(ord.size()) > o.history) file.fail("/history/order is longer than the history");
    for (int64_t r : ord)
      if (r < 0 || r >= rows2 || r == spare2) file.fail("/history/order names a bad row");
    if (rows2 > 0) {
      for (auto [name, buf] : {std::pair{"/history/S", &sbuf}, std::pair{"/history/Y", &ybuf}}) {
        file.check_dataset(name, h5::Kind::Float, {rows2, int64_t(n)}, "float32");
        buf->resize(size_t(rows2) * n);
        file.read(name, buf->data(), buf->size());
      }
    }
    for (auto [name, vec, cnt] :
         {std::tuple{"/history/sy", &sy2, M * M}, std::tuple{"/history/yy", &yy2, M * M},
          std::tuple{"/history/pgs", &pgs2, M}, std::tuple{"/history/pgy", &pgy2, M}}) {
      file.check_dataset(name, h5::Kind::Float, cnt == M ? h5::Dims{M} : h5::Dims{M, M}, "float64");
      vec->resize(size_t(cnt));
      file.read(name, vec->data(), vec->size());
    }
  }
  MoreThuente ls2;
  if (st) {
    const auto ld_ = file.read_attr_doubles("/line_search", "doubles");
    const auto li = file.read_attr_int64s("/line_search", "ints");
    if (ld_.size() != 19 || li.size() != 3)
      file.fail("/line_search has the wrong number of values");
    double* fields[] = {&ls2.ftol,  &ls2.gtol,  &ls2.xtol,   &ls2.stpmin, &ls2.stpmax,
                        &ls2.ginit, &ls2.gtest, &ls2.gx,     &ls2.gy,     &ls2.finit,
                        &ls2.fx,    &ls2.fy,    &ls2.stx,    &ls2.sty,    &ls2.stmin,
                        &ls2.stmax, &ls2.width, &ls2.width1, &ls2.stp};
    for (size_t i = 0; i < 19; ++i) *fields[i] = ld_[i];
    ls2.brackt = li[0] != 0;
    ls2.stage = int(li[1]);
    ls2.task = LineSearchTask(li[2]);
  }
  std::string blob2;
  if (file.exists("/user_blob")) {
    const auto bytes = file.read_vector<int64_t>("/user_blob");
    blob2.resize(bytes.size());
    for (size_t i = 0; i < bytes.size(); ++i) blob2[i] = char(static_cast<unsigned char>(bytes[i]));
  }

  // Everything read and checked: commit.
  file.close();
  opt = o;
  started = st;
  xshape = saved_shape;
  iteration = int(si[1]);
  evaluations = int(si[2]);
  rollbacks = int(si[3]);
  skipped = int(si[4]);
  have_prev = si[5] != 0;
  after_rollback = si[6] != 0;
  last_ls_evals = int(si[7]);
  f = sd[0];
  f_prev = sd[1];
  pg_inf = sd[2];
  pg0_inf = sd[3];
  last_step = sd[4];
  nonfinite_len = sd[5];
  blob = std::move(blob2);
  reset_history();
  be->copy_from_host(xk.data(), xv.data(), n);
  if (st) {
    be->copy_from_host(gk.data(), gv.data(), n);
    rows = rows2;
    spare = spare2;
    order.assign(ord.begin(), ord.end());
    for (int r = 0; r < rows; ++r) {
      be->copy_from_host(row_s(r), sbuf.data() + size_t(r) * n, n);
      be->copy_from_host(row_y(r), ybuf.data() + size_t(r) * n, n);
    }
    sy = std::move(sy2);
    yy = std::move(yy2);
    pgs = std::move(pgs2);
    pgy = std::move(pgy2);
    ls = ls2;
    // pg is an element-wise function of (x, g): recomputing it gives the same bits.
    double o3[3];
    be->lbfgs_project_grad(xk.data(), gk.data(), opt.lower, opt.upper, opt.bounded, pg.data(), n,
                           o3);
  }
  if (x.empty()) x = Tensor(saved_shape, device);
  require(x.numel() == n, "L-BFGS checkpoint '" + path + "': x has " + std::to_string(x.numel()) +
                              " elements, expected " + std::to_string(n));
  x.copy_from(View{xk.data(), x.shape(), device});
}

void Lbfgs::save_checkpoint(const std::string& path, const Tensor& x) const {
  impl_->save(path, x);
}

void Lbfgs::load_checkpoint(const std::string& path, Tensor& x) {
  impl_->load(path, x);
}

}  // namespace preimage
