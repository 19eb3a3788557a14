// lbfgs_scipy_driver: one C++ objective for both sides of the SciPy comparison
// (test/scipy_compare.py, run by test/run_scipy_compare.sh as ctest lbfgs_vs_scipy).
//
//   lbfgs_scipy_driver PROBLEM serve
//       SciPy side: a binary protocol on stdin/stdout (native little-endian):
//       → int64 n, int64 bounded, float64 lower, float64 upper, n × float64 x0
//       then per request ← n × float64 x, → float64 f, n × float64 ∇f; EOF ends.
//       Analytic problems evaluate in double at SciPy's x; gatys<S> rounds x to float32 and runs
//       the device objective (the only implementation there is).
//   lbfgs_scipy_driver PROBLEM solve [--history M] [--max-iter K] [--max-eval E] [--gtol G]
//                                    [--ftol F] [--device cpu|cuda]
//       Our side: preimage::Lbfgs on the same problem; prints one JSON line with the result and
//       f after every iteration (f_history[0] is f(x0)), the accepted steps, the evaluations of
//       each line search and, for bounded problems, the number of variables at a bound
//       (at_bound[0] at x0).
// PROBLEM: rosenbrock<N> | xrosenbrock<N> | powell<N> | bquad<N> | logreg<N> |
//          gatys<S>[s<SEED>][p<0|1>] (x0 noise seed, default 2; target pattern, default 0).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/backend.h"
#include "preimage/error.h"
#include "preimage/lbfgs.h"
#include "test/lbfgs_gatys.h"
#include "test/lbfgs_problems.h"

using namespace preimage;

namespace {

struct Problem {
  test::LbfgsProblem host;                    // analytic problems
  std::unique_ptr<test::GatysProblem> gatys;  // gatys<S>
  size_t n() const { return gatys ? gatys->n() : host.n; }
  bool bounded() const { return gatys ? true : host.bounded; }
  double lower() const { return gatys ? 0.0 : host.lower; }
  double upper() const { return gatys ? 1.0 : host.upper; }
  std::vector<double> x0() const {
    return gatys ? std::vector<double>(gatys->x0.begin(), gatys->x0.end()) : host.x0;
  }
};

Problem make_problem(const std::string& name, Device device) {
  Problem p;
  if (name.rfind("gatys", 0) == 0) {
    // gatys<S>[s<SEED>][p<PATTERN>]: size, x0 noise seed (default 2), target pattern (0 or 1).
    const std::string bad =
        "bad gatys problem name '" + name + "' (expected gatys<S>[s<SEED>][p<0|1>])";
    size_t pos = 5;
    auto number = [&] {
      const size_t start = pos;
      while (pos < name.size() && pos - start < 9 && name[pos] >= '0' && name[pos] <= '9') ++pos;
      if (pos == start || (pos < name.size() && name[pos] >= '0' && name[pos] <= '9'))
        throw Error(bad);
      return std::stoi(name.substr(start, pos - start));
    };
    const int size = number();
    int seed = 2, pattern = 0;
    while (pos < name.size()) {
      const char key = name[pos++];
      const int v = number();
      if (key == 's')
        seed = v;
      else if (key == 'p' && (v == 0 || v == 1))
        pattern = v;
      else
        throw Error(bad);
    }
    if (size < 1) throw Error(bad);
    p.gatys = test::make_gatys_problem(size, device, seed, pattern);
  } else {
    p.host = test::make_lbfgs_problem(name);
  }
  return p;
}

void write_exact(const void* src, size_t bytes) {
  if (std::fwrite(src, 1, bytes, stdout) != bytes) throw Error("serve: short write on stdout");
}

int serve(Problem& p) {
  const size_t n = p.n();
  const int64_t header[2] = {int64_t(n), p.bounded() ? 1 : 0};
  const double box[2] = {p.lower(), p.upper()};
  write_exact(header, sizeof header);
  write_exact(box, sizeof box);
  const std::vector<double> x0 = p.x0();
  write_exact(x0.data(), n * sizeof(double));
  std::fflush(stdout);
  std::vector<double> x(n), g(n);
  Tensor xt, gt;
  if (p.gatys) {
    xt = Tensor(p.gatys->shape(), p.gatys->device);
    gt = Tensor(p.gatys->shape(), p.gatys->device);
  }
  for (;;) {
    const size_t got = std::fread(x.data(), 1, n * sizeof(double), stdin);
    if (got == 0 && std::feof(stdin)) return 0;
    if (got != n * sizeof(double)) throw Error("serve: short read on stdin");
    double f;
    if (p.gatys) {
      const std::vector<float> xf(x.begin(), x.end());
      xt.copy_from(View{const_cast<float*>(xf.data()), xt.shape(), Device::CPU});
      f = p.gatys->evaluate(xt.view(), gt.view());
      const std::vector<float> gf = gt.to_vector();
      std::copy(gf.begin(), gf.end(), g.begin());
    } else {
      f = p.host.fg(x.data(), g.data());
    }
    write_exact(&f, sizeof f);
    write_exact(g.data(), n * sizeof(double));
    std::fflush(stdout);
  }
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

int solve(Problem& p, const LbfgsOptions& o, Device device) {
  const size_t n = p.n();
  const Shape shape = p.gatys ? p.gatys->shape() : Shape{1, 1, 1, int(n)};
  const std::vector<double> x0 = p.x0();
  Tensor x = Tensor::from_vector(shape, std::vector<float>(x0.begin(), x0.end()), device);
  Objective_fn fn;
  if (p.gatys) {
    fn = p.gatys->objective_fn();
  } else {
    fn = [&p, n, device](const View& xv, const View& gv) {
      std::vector<float> xh(n);
      backend(device).copy_to_host(xh.data(), xv.data, n);
      std::vector<double> xd(xh.begin(), xh.end()), gd(n);
      const double f = p.host.fg(xd.data(), gd.data());
      const std::vector<float> gh(gd.begin(), gd.end());
      backend(device).copy_from_host(gv.data, gh.data(), n);
      return f;
    };
  }
  std::vector<double> history, steps;
  std::vector<int> ls_evals;
  std::vector<int> at_bound;  // variables at a bound, at x0 and after each iteration (bounded)
  auto count_at_bound = [&] {
    if (!p.bounded()) return;
    const std::vector<float> xh = x.to_vector();
    at_bound.push_back(int(std::count_if(xh.begin(), xh.end(), [&](float v) {
      return v <= float(p.lower()) || v >= float(p.upper());
    })));
  };
  count_at_bound();
  {
    Tensor g(shape, device);
    history.push_back(fn(x.view(), g.view()));
  }
  Lbfgs solver(device, n, o);
  const LbfgsResult r = solver.minimize(x, fn, [&](const IterationInfo& i) {
    history.push_back(i.f);
    steps.push_back(i.step);
    ls_evals.push_back(i.line_search_evals);
    count_at_bound();
    return true;
  });
  std::printf(
      "{\"f\": %.17g, \"iterations\": %d, \"evaluations\": %d, \"reason\": \"%s\", "
      "\"message\": \"%s\", \"gnorm\": %.17g, \"rollbacks\": %d, \"skipped\": %d, "
      "\"f_history\": [",
      r.f, r.iterations, r.evaluations, stop_reason_name(r.reason), json_escape(r.message).c_str(),
      r.gnorm, r.rollbacks, r.skipped_updates);
  for (size_t i = 0; i < history.size(); ++i) std::printf("%s%.17g", i ? ", " : "", history[i]);
  std::printf("], \"steps\": [");
  for (size_t i = 0; i < steps.size(); ++i) std::printf("%s%.17g", i ? ", " : "", steps[i]);
  std::printf("], \"ls_evals\": [");
  for (size_t i = 0; i < ls_evals.size(); ++i) std::printf("%s%d", i ? ", " : "", ls_evals[i]);
  std::printf("], \"at_bound\": [");
  for (size_t i = 0; i < at_bound.size(); ++i) std::printf("%s%d", i ? ", " : "", at_bound[i]);
  std::printf("]}\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::fprintf(stderr,
                   "usage: lbfgs_scipy_driver PROBLEM serve|solve [--history M] [--max-iter K] "
                   "[--max-eval E] [--gtol G] [--ftol F] [--device cpu|cuda]\n");
      return 2;
    }
    const std::string name = argv[1], mode = argv[2];
    LbfgsOptions o;
    o.max_iterations = 10000;
    std::string dev = "cpu";
    for (int i = 3; i + 1 < argc; i += 2) {
      const std::string k = argv[i], v = argv[i + 1];
      if (k == "--history")
        o.history = std::stoi(v);
      else if (k == "--max-iter")
        o.max_iterations = std::stoi(v);
      else if (k == "--max-eval")
        o.max_evaluations = std::stoi(v);
      else if (k == "--gtol")
        o.gtol = std::stod(v);
      else if (k == "--ftol")
        o.ftol = std::stod(v);
      else if (k == "--device")
        dev = v;
      else
        throw Error("unknown flag " + k);
    }
    const Device device = resolve_device(dev);
    Problem p = make_problem(name, mode == "serve" ? Device::CPU : device);
    o.bounded = p.bounded();
    o.lower = float(p.lower());
    o.upper = float(p.upper());
    if (mode == "serve") return serve(p);
    if (mode == "solve") return solve(p, o, device);
    throw Error("mode must be serve or solve, got " + mode);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lbfgs_scipy_driver: %s\n", e.what());
    return 1;
  }
}
