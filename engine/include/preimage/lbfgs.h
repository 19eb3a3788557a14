// Native L-BFGS on the backend's device: x, g, the search direction and the m history pairs live
// on the device; the two-loop recursion runs on the host in coefficient space from batched inner
// products (only O(m) scalars cross per iteration). Moré–Thuente line search (strong Wolfe),
// scale-invariant (relative) stopping, box constraints by projected L-BFGS with an active set
// (docs/lbfgs.md), NaN/Inf backtracking and rollback, and checkpoint/resume of the full state
// (bit-identical continuation on the CPU).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "preimage/tensor.h"

namespace preimage {

enum class StopReason {
  None,         // still running (between iterations)
  GradientTol,  // ‖pg_k‖∞ ≤ gtol · ‖pg_0‖∞ (pg: projected gradient, docs/lbfgs.md)
  FunctionTol,  // |f_{k−1} − f_k| ≤ ftol · max(|f_{k−1}|, |f_k|)
  MaxIterations,
  MaxEvaluations,
  LineSearchFailed,  // no acceptable step, even along steepest descent with a fresh history
  NonFinite,         // NaN/Inf trials again right after a rollback
  Interrupted,       // the callback asked to stop (e.g. SIGINT)
};
const char* stop_reason_name(StopReason r);

struct LbfgsOptions {
  int history = 10;  // m, 1..1024
  int max_iterations = 100;
  int max_evaluations = 0;     // 0: 2.5 × max_iterations (at least max_iterations + 20)
  double gtol = 1e-7;          // relative to the initial projected-gradient ∞-norm
  double ftol = 1e-12;         // relative change |f_k − f_{k+1}| / max(|f_k|, |f_{k+1}|)
  double c1 = 1e-4, c2 = 0.9;  // strong Wolfe; along steepest descent c2 is min(c2, 0.1)
  double xtol = 0.1;           // Moré–Thuente relative width of the bracketing interval
  int max_line_search = 20;    // evaluations per line search before it counts as failed
  int max_nonfinite = 10;      // consecutive NaN/Inf trials (each halves the step) → rollback
  double skip_eps = 1e-10;     // skip the update when sᵀy ≤ skip_eps · ‖y‖²
  bool bounded = false;
  float lower = 0.f, upper = 1.f;  // box constraints when bounded
};

// f(x) → value; writes ∇f(x) into g (same shape as x, on x's device).
using Objective_fn = std::function<double(const View& x, const View& g)>;

struct IterationInfo {
  int iteration = 0, evaluations = 0;
  double f = 0;
  double gnorm = 0;   // ‖pg‖∞ at the new iterate
  double gnorm0 = 0;  // ‖pg‖∞ at the start (gtol is relative to it)
  double step = 0;    // accepted step length t (x_{k+1} = P(x_k + t·d))
  int line_search_evals = 0;
  int history = 0;    // pairs in use after this iteration
  int rollbacks = 0;  // so far
};

struct LbfgsResult {
  StopReason reason = StopReason::None;
  double f = 0;
  double gnorm = 0;  // ‖pg‖∞ at the returned x
  int iterations = 0, evaluations = 0;
  int rollbacks = 0;  // NaN/Inf recoveries (history resets after repeated non-finite trials)
  int skipped_updates = 0;
  std::string message;
};

class Lbfgs {
 public:
  // n: problem size; the state lives on `device`. Throws Error for invalid options.
  Lbfgs(Device device, size_t n, LbfgsOptions options = {});
  ~Lbfgs();
  Lbfgs(Lbfgs&&) noexcept;
  Lbfgs& operator=(Lbfgs&&) noexcept;

  // Minimizes from x (updated in place after every accepted iteration; never receives a NaN).
  // When the solver holds a state (from load_checkpoint() or an earlier minimize() that stopped
  // without converging), it continues from it and first copies that iterate into x; otherwise
  // it starts at x (projected onto the box). on_iteration is called after every accepted
  // iteration; returning false stops with StopReason::Interrupted, leaving a consistent state
  // that save_checkpoint() can write and a later minimize() continues bit-identically.
  LbfgsResult minimize(Tensor& x, const Objective_fn& f,
                       const std::function<bool(const IterationInfo&)>& on_iteration = {});

  // Full state (x, g, history, Gram matrices, counters, line-search state, options, user blob)
  // to HDF5, atomically (temp + rename). x: the caller's tensor, saved as the iterate before the
  // first minimize(); afterwards the solver's own iterate (equal to x) is saved.
  void save_checkpoint(const std::string& path, const Tensor& x) const;
  // Restores state, options and x (allocated with the saved shape when empty); throws Error
  // naming the file for a bad checkpoint or one whose n or history differs from this solver's.
  void load_checkpoint(const std::string& path, Tensor& x);

  // Drops the state: the next minimize() starts afresh from its x.
  void reset();
  bool has_state() const;

  const LbfgsOptions& options() const;
  // Changes limits and tolerances; history, bounds and box may change only without a state.
  void set_options(const LbfgsOptions& options);

  // Opaque caller data (e.g. an RNG state) stored in and restored from checkpoints.
  void set_user_blob(std::string blob);
  const std::string& user_blob() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace preimage
