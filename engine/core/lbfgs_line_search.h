// Moré–Thuente line search (MINPACK-2 dcsrch/dcstep, as used by L-BFGS-B 3.0), on host scalars.
// Finds t with the strong Wolfe conditions φ(t) ≤ φ(0) + c1·t·φ'(0), |φ'(t)| ≤ c2·|φ'(0)|
// by safeguarded cubic/quadratic interpolation inside a bracketing interval. Reverse
// communication: start() then, after every evaluation of φ and φ' at step(), next().
// The whole state is plain data so that a solver checkpoint can store it.
#pragma once

namespace preimage::detail {

enum class LineSearchTask : int {
  Evaluate = 0,      // evaluate φ, φ' at step()
  Converged = 1,     // strong Wolfe holds at step()
  WarnRounding = 2,  // rounding errors prevent progress
  WarnXtol = 3,      // the bracket is narrower than xtol
  WarnStpMax = 4,    // step() == stpmax with sufficient decrease and φ' < 0
  WarnStpMin = 5,    // step() == stpmin without sufficient decrease
  Error = 6,         // bad input (e.g. φ'(0) ≥ 0)
};

struct MoreThuente {
  // parameters
  double ftol = 1e-4, gtol = 0.9, xtol = 0.1, stpmin = 0, stpmax = 1e10;
  // state (dcsrch's isave/dsave)
  bool brackt = false;
  int stage = 1;
  double ginit = 0, gtest = 0, gx = 0, gy = 0, finit = 0, fx = 0, fy = 0, stx = 0, sty = 0;
  double stmin = 0, stmax = 0, width = 0, width1 = 0;
  double stp = 0;
  LineSearchTask task = LineSearchTask::Error;

  // φ(0) = f0, φ'(0) = g0 (< 0), first trial step t0 ∈ [stpmin, stpmax].
  LineSearchTask start(double f0, double g0, double t0);
  // φ(step()) = f, φ'(step()) = g; returns the next task (step() updated for Evaluate).
  LineSearchTask next(double f, double g);
  double step() const { return stp; }
};

// One safeguarded step of MINPACK-2's dcstep: updates the interval (stx, fx, dx), (sty, fy, dy)
// with the trial (stp, fp, dp) and moves stp to the new trial, within [stpmin, stpmax].
void more_thuente_step(double& stx, double& fx, double& dx, double& sty, double& fy, double& dy,
                       double& stp, double fp, double dp, bool& brackt, double stpmin,
                       double stpmax);

}  // namespace preimage::detail
