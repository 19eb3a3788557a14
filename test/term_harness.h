// Helpers for the objective-term tests (test_gram.cpp, test_bilinear.cpp, test_objective.cpp):
// run one Term on a device from host activations, compare against central differences of a
// double-precision reference, and call the PyTorch reference script (test/texture_reference.py).
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "preimage/error.h"
#include "preimage/objective.h"
#include "test/temp_dir.h"
#include "test/test_util.h"

namespace preimage::test {

struct HostTensor {
  Shape shape;
  std::vector<float> data;
};

inline HostTensor random_tensor(Shape s, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  return {s, random_vector(s.numel(), seed, lo, hi)};
}

struct TermResult {
  double value = 0;
  std::map<std::string, std::vector<float>> tap_grads;
  std::vector<float> image_grad;
};

// Evaluates `term` on device d: activations from `acts`, tap gradients starting at `seed_grad`
// (zero when empty) and the image gradient at zero; returns the value and the gradients.
inline TermResult run_term(Term& term, Device d, const std::map<std::string, HostTensor>& acts,
                           const HostTensor* image = nullptr,
                           const std::map<std::string, std::vector<float>>* seed_grad = nullptr) {
  std::map<std::string, Tensor> a, g;
  TapViews av, gv;
  for (const auto& [name, t] : acts) {
    a.emplace(name, Tensor::from_vector(t.shape, t.data, d));
    if (seed_grad && seed_grad->count(name))
      g.emplace(name, Tensor::from_vector(t.shape, seed_grad->at(name), d));
    else
      g.emplace(name, Tensor::zeros(t.shape, d));
    av[name] = a.at(name).view();
    gv[name] = g.at(name).view();
  }
  Tensor img, img_grad;
  View iv, igv;
  if (image) {
    img = Tensor::from_vector(image->shape, image->data, d);
    img_grad = Tensor::zeros(image->shape, d);
    iv = img.view();
    igv = img_grad.view();
  }
  TermResult r;
  r.value = term.evaluate(av, gv, iv, igv);
  for (auto& [name, t] : g) r.tap_grads[name] = t.to_vector();
  if (image) r.image_grad = img_grad.to_vector();
  return r;
}

// Central differences (step h) of f at every coordinate of x.
inline std::vector<double> central_differences(
    std::vector<double> x, double h, const std::function<double(const std::vector<double>&)>& f) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double fp = f(x);
    x[i] = keep - h;
    const double fm = f(x);
    x[i] = keep;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline double rel_diff(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(b), 1e-300);
}

// ---- PyTorch reference (test/texture_reference.py through Debian's /usr/bin/python3) ------

inline std::filesystem::path source_dir() {
  if (const char* s = std::getenv("PREIMAGE_SOURCE_DIR")) return s;
  return std::filesystem::path(__FILE__).parent_path().parent_path();
}

inline void write_floats(const std::filesystem::path& p, const std::vector<float>& v) {
  std::ofstream o(p, std::ios::binary);
  o.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  if (!o) throw std::runtime_error("cannot write " + p.string());
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream o(p);
  o << s;
  if (!o) throw std::runtime_error("cannot write " + p.string());
}

inline std::vector<double> read_doubles(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  const auto bytes = size_t(in.tellg());
  std::vector<double> v(bytes / sizeof(double));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(double)));
  return v;
}

// Runs the reference script over every case directory under dir; returns its exit status
// (77: /usr/bin/python3 cannot import numpy or torch).
inline int run_texture_reference(const std::filesystem::path& dir) {
  const std::string cmd = "/usr/bin/python3 '" +
                          (source_dir() / "test" / "texture_reference.py").string() + "' '" +
                          dir.string() + "'";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The error bound of a float32 implementation against the float64 reference: PyTorch's own
// float32 result's error, times 4, and never below 1e-5.
inline double fp32_bound(const std::vector<double>& ref64, const std::vector<double>& torch32) {
  return std::max(1e-5,
                  4.0 * max_rel_error(std::vector<float>(torch32.begin(), torch32.end()), ref64));
}

}  // namespace preimage::test
