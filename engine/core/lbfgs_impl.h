// The L-BFGS solver's state and iteration (struct Lbfgs::Impl), engine-private: the solver
// (engine/core/lbfgs.cpp) and its HDF5 checkpoints (engine/io/lbfgs_checkpoint.cpp) share it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/backend.h"
#include "engine/core/lbfgs_line_search.h"
#include "preimage/error.h"
#include "preimage/lbfgs.h"

namespace preimage {

namespace lbfgs_detail {

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

inline bool finite(double v) {
  return std::isfinite(v);
}

inline void check_options(const LbfgsOptions& o) {
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

inline int max_evaluations(const LbfgsOptions& o) {
  if (o.max_evaluations > 0) return o.max_evaluations;
  const double e = std::max(2.5 * o.max_iterations, o.max_iterations + 20.0);
  return int(std::min(e, double(std::numeric_limits<int>::max())));
}

enum class Search { Accepted, Failed, NonFinite, MaxEvaluations };

}  // namespace lbfgs_detail

// Only the two solver files include this header.
using namespace lbfgs_detail;

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

}  // namespace preimage
