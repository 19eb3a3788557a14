// Moré–Thuente line search: a C++ transcription of MINPACK-2's dcsrch and dcstep (J. J. Moré and
// D. J. Thuente, "Line search algorithms with guaranteed sufficient decrease", ACM TOMS 20, 1994),
// the version L-BFGS-B 3.0 ships. Variable names follow the Fortran so the two can be compared.
#include "engine/core/lbfgs_line_search.h"

#include <algorithm>
#include <cmath>

namespace preimage::detail {
namespace {
constexpr double kXtrapl = 1.1, kXtrapu = 4.0, kP5 = 0.5, kP66 = 0.66;
}

LineSearchTask MoreThuente::start(double f0, double g0, double t0) {
  stp = t0;
  if (!(t0 >= stpmin) || !(t0 <= stpmax) || !(g0 < 0) || ftol < 0 || gtol < 0 || xtol < 0 ||
      stpmin < 0 || stpmax < stpmin)
    return task = LineSearchTask::Error;
  brackt = false;
  stage = 1;
  finit = f0;
  ginit = g0;
  gtest = ftol * ginit;
  width = stpmax - stpmin;
  width1 = width / kP5;
  stx = 0;
  fx = finit;
  gx = ginit;
  sty = 0;
  fy = finit;
  gy = ginit;
  stmin = 0;
  stmax = stp + kXtrapu * stp;
  return task = LineSearchTask::Evaluate;
}

LineSearchTask MoreThuente::next(double f, double g) {
  const double ftest = finit + stp * gtest;
  if (stage == 1 && f <= ftest && g >= 0) stage = 2;

  // Warnings, then convergence (which overrides them), as dcsrch orders them.
  task = LineSearchTask::Evaluate;
  if (brackt && (stp <= stmin || stp >= stmax)) task = LineSearchTask::WarnRounding;
  if (brackt && stmax - stmin <= xtol * stmax) task = LineSearchTask::WarnXtol;
  if (stp == stpmax && f <= ftest && g <= gtest) task = LineSearchTask::WarnStpMax;
  if (stp == stpmin && (f > ftest || g >= gtest)) task = LineSearchTask::WarnStpMin;
  if (f <= ftest && std::fabs(g) <= gtol * (-ginit)) task = LineSearchTask::Converged;
  if (task != LineSearchTask::Evaluate) return task;

  if (stage == 1 && f <= fx && f > ftest) {
    // Modified function ψ(t) = φ(t) − φ(0) − gtest·t until a step with sufficient decrease and
    // non-negative derivative is seen (stage 2).
    const double fm = f - stp * gtest;
    double fxm = fx - stx * gtest, fym = fy - sty * gtest;
    const double gm = g - gtest;
    double gxm = gx - gtest, gym = gy - gtest;
    more_thuente_step(stx, fxm, gxm, sty, fym, gym, stp, fm, gm, brackt, stmin, stmax);
    fx = fxm + stx * gtest;
    fy = fym + sty * gtest;
    gx = gxm + gtest;
    gy = gym + gtest;
  } else {
    more_thuente_step(stx, fx, gx, sty, fy, gy, stp, f, g, brackt, stmin, stmax);
  }

  if (brackt) {
    // Bisect when the interval did not shrink enough over two steps.
    if (std::fabs(sty - stx) >= kP66 * width1) stp = stx + kP5 * (sty - stx);
    width1 = width;
    width = std::fabs(sty - stx);
    stmin = std::min(stx, sty);
    stmax = std::max(stx, sty);
  } else {
    stmin = stp + kXtrapl * (stp - stx);
    stmax = stp + kXtrapu * (stp - stx);
  }
  stp = std::min(std::max(stp, stpmin), stpmax);
  // Unusual termination: return the best step so far.
  if ((brackt && (stp <= stmin || stp >= stmax)) || (brackt && stmax - stmin <= xtol * stmax))
    stp = stx;
  return task = LineSearchTask::Evaluate;
}

void more_thuente_step(double& stx, double& fx, double& dx, double& sty, double& fy, double& dy,
                       double& stp, double fp, double dp, bool& brackt, double stpmin,
                       double stpmax) {
  const double sgnd = dp * (dx / std::fabs(dx));
  double stpf;
  if (fp > fx) {
    // Case 1: higher function value. The minimum is bracketed; take the cubic step if it is
    // closer to stx than the quadratic one, else their average.
    const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
    const double s = std::max({std::fabs(theta), std::fabs(dx), std::fabs(dp)});
    double gamma = s * std::sqrt((theta / s) * (theta / s) - (dx / s) * (dp / s));
    if (stp < stx) gamma = -gamma;
    const double p = (gamma - dx) + theta;
    const double q = ((gamma - dx) + gamma) + dp;
    const double r = p / q;
    const double stpc = stx + r * (stp - stx);
    const double stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx);
    if (std::fabs(stpc - stx) < std::fabs(stpq - stx))
      stpf = stpc;
    else
      stpf = stpc + (stpq - stpc) / 2.0;
    brackt = true;
  } else if (sgnd < 0.0) {
    // Case 2: lower value, derivatives of opposite sign: bracketed; the step farther from stp.
    const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
    const double s = std::max({std::fabs(theta), std::fabs(dx), std::fabs(dp)});
    double gamma = s * std::sqrt((theta / s) * (theta / s) - (dx / s) * (dp / s));
    if (stp > stx) gamma = -gamma;
    const double p = (gamma - dp) + theta;
    const double q = ((gamma - dp) + gamma) + dx;
    const double r = p / q;
    const double stpc = stp + r * (stx - stp);
    const double stpq = stp + (dp / (dp - dx)) * (stx - stp);
    stpf = std::fabs(stpc - stp) > std::fabs(stpq - stp) ? stpc : stpq;
    brackt = true;
  } else if (std::fabs(dp) < std::fabs(dx)) {
    // Case 3: lower value, same-sign derivative decreasing in magnitude. The cubic step is used
    // only if it tends to infinity in the direction of the step or its minimum is beyond stp.
    const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
    const double s = std::max({std::fabs(theta), std::fabs(dx), std::fabs(dp)});
    double gamma = s * std::sqrt(std::max(0.0, (theta / s) * (theta / s) - (dx / s) * (dp / s)));
    if (stp > stx) gamma = -gamma;
    const double p = (gamma - dp) + theta;
    const double q = (gamma + (dx - dp)) + gamma;
    const double r = p / q;
    double stpc;
    if (r < 0.0 && gamma != 0.0)
      stpc = stp + r * (stx - stp);
    else if (stp > stx)
      stpc = stpmax;
    else
      stpc = stpmin;
    const double stpq = stp + (dp / (dp - dx)) * (stx - stp);
    if (brackt) {
      // The step closer to stp, kept inside the interval.
      stpf = std::fabs(stpc - stp) < std::fabs(stpq - stp) ? stpc : stpq;
      if (stp > stx)
        stpf = std::min(stp + kP66 * (sty - stp), stpf);
      else
        stpf = std::max(stp + kP66 * (sty - stp), stpf);
    } else {
      // The step farther from stp, within the extrapolation limits.
      stpf = std::fabs(stpc - stp) > std::fabs(stpq - stp) ? stpc : stpq;
      stpf = std::min(stpmax, stpf);
      stpf = std::max(stpmin, stpf);
    }
  } else {
    // Case 4: lower value, same-sign derivative not decreasing: cubic from stp and sty when
    // bracketed, else the limit in the direction of the step.
    if (brackt) {
      const double theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp;
      const double s = std::max({std::fabs(theta), std::fabs(dy), std::fabs(dp)});
      double gamma = s * std::sqrt((theta / s) * (theta / s) - (dy / s) * (dp / s));
      if (stp > sty) gamma = -gamma;
      const double p = (gamma - dp) + theta;
      const double q = ((gamma - dp) + gamma) + dy;
      const double r = p / q;
      stpf = stp + r * (sty - stp);
    } else if (stp > stx) {
      stpf = stpmax;
    } else {
      stpf = stpmin;
    }
  }

  // Update the interval that contains a minimizer.
  if (fp > fx) {
    sty = stp;
    fy = fp;
    dy = dp;
  } else {
    if (sgnd < 0.0) {
      sty = stx;
      fy = fx;
      dy = dx;
    }
    stx = stp;
    fx = fp;
    dx = dp;
  }
  stp = stpf;
}

}  // namespace preimage::detail
