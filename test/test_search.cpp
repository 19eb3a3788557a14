// Texture similarity index (preimage/texture_index.h): the stored vectors against full Gram
// matrices, exact search against brute force (CPU and the CUDA backend on the simulator),
// families of generated textures (top-5 from the query's own family), add/replace, float16,
// verification and the errors for corrupt files and mismatched layers. The kill-during-add test
// is test/test_index_cli.py (ctest index_cli), which really SIGKILLs the command line.
#include <hdf5.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/texture_index.h"
#include "test/temp_dir.h"

using namespace preimage;
namespace fs = std::filesystem;

namespace {

const char* kFamilies[] = {"stripes", "checker", "dots", "noise", "rings"};

// One 64×64 texture of a family; every variant draws its own frequency, phase, orientation,
// colour jitter and pixel noise.
Tensor family_texture(int family, std::mt19937_64& rng, int size = 64) {
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> nd(0, 0.02);
  auto U = [&](double a, double b) { return a + (b - a) * u(rng); };
  std::vector<double> v(size_t(size) * size);
  const double pi2 = 2 * M_PI;
  if (family == 0) {
    const double f = U(0.08, 0.12), t = U(-0.2, 0.2), p = U(0, 6.3);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        v[y * size + x] = 0.5 + 0.5 * std::sin(pi2 * f * (x * std::cos(t) + y * std::sin(t)) + p);
  } else if (family == 1) {
    const double f = U(0.06, 0.09), p0 = U(0, 6.3), p1 = U(0, 6.3);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        v[y * size + x] = std::sin(pi2 * f * x + p0) * std::sin(pi2 * f * y + p1) > 0;
  } else if (family == 2) {
    const int n = 25 + int(U(0, 10));
    for (int i = 0; i < n; ++i) {
      const double cy = U(0, size), cx = U(0, size), r = U(2, 3);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x)
          v[y * size + x] += std::exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (2 * r * r));
    }
    for (auto& a : v) a = std::min(a, 1.0);
  } else if (family == 3) {
    std::vector<double> n(size_t(size + 4) * (size + 4));
    for (auto& a : n) a = u(rng);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        double s = 0;
        for (int dy = 0; dy < 5; ++dy)
          for (int dx = 0; dx < 5; ++dx) s += n[(y + dy) * (size + 4) + x + dx];
        v[y * size + x] = std::clamp((s / 25 - 0.5) * 3 + 0.5, 0.0, 1.0);
      }
  } else {
    const double cy = U(0, size), cx = U(0, size), f = U(0.1, 0.14), p = U(0, 6.3);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        v[y * size + x] = 0.5 + 0.5 * std::sin(pi2 * f * std::hypot(y - cy, x - cx) + p);
  }
  const double lo[5][3] = {{0.1, 0.2, 0.7},
                           {0.05, 0.05, 0.05},
                           {0.05, 0.15, 0.05},
                           {0.35, 0.2, 0.05},
                           {0.45, 0.1, 0.55}};
  const double hi[5][3] = {
      {0.95, 0.95, 1.0}, {0.85, 0.15, 0.1}, {0.3, 0.95, 0.3}, {0.8, 0.6, 0.35}, {1.0, 0.9, 0.2}};
  std::vector<float> rgb(size_t(3) * size * size);
  for (int c = 0; c < 3; ++c) {
    const double jitter = U(-0.05, 0.05);
    for (size_t i = 0; i < v.size(); ++i)
      rgb[c * v.size() + i] = float(std::clamp(
          lo[family][c] + (hi[family][c] - lo[family][c]) * v[i] + jitter + nd(rng), 0.0, 1.0));
  }
  return Tensor::from_vector({1, 3, size, size}, rgb);
}

// Writes families × variants PNGs into dir; returns the paths in order.
std::vector<std::string> write_families(const test::TempDir& dir, int variants, uint64_t seed,
                                        const std::string& prefix = "") {
  std::mt19937_64 rng(seed);
  std::vector<std::string> paths;
  for (int f = 0; f < 5; ++f)
    for (int v = 0; v < variants; ++v) {
      char name[64];
      std::snprintf(name, sizeof name, "%s%s_%03d.png", prefix.c_str(), kFamilies[f], v);
      paths.push_back(dir.file(name));
      save_png(family_texture(f, rng).view(), paths.back());
    }
  return paths;
}

std::string family_of(const std::string& path) {
  const std::string base = fs::path(path).filename().string();
  return base.substr(0, base.find('_'));
}

TextureIndexSettings small_settings() {
  TextureIndexSettings s;
  s.size = 64;
  return s;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("search: stored upper-triangle vectors give the full-matrix Frobenius distance",
          "[search]") {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd(0, 1);
  for (int c : {1, 2, 5, 17, 64}) {
    INFO("channels " << c);
    const int m = 13;
    std::vector<std::vector<float>> g(2, std::vector<float>(size_t(c) * c));
    for (auto& gm : g) {
      std::vector<double> f(size_t(c) * m);
      for (auto& x : f) x = std::fabs(nd(rng));  // post-ReLU features are non-negative
      for (int i = 0; i < c; ++i)
        for (int j = 0; j < c; ++j) {
          double s = 0;
          for (int p = 0; p < m; ++p) s += f[i * m + p] * f[j * m + p];
          gm[size_t(i) * c + j] = float(s);
        }
    }
    const size_t len = gram_vector_length(c);
    REQUIRE(len == size_t(c) * (c + 1) / 2);
    std::vector<float> a(len), b(len);
    gram_to_unit_vector(g[0].data(), c, a.data());
    gram_to_unit_vector(g[1].data(), c, b.data());
    double na = 0, ab = 0, fa = 0, fb = 0, d2 = 0;
    for (size_t k = 0; k < len; ++k) {
      na += double(a[k]) * a[k];
      ab += double(a[k]) * b[k];
    }
    for (size_t k = 0; k < size_t(c) * c; ++k) {
      fa += double(g[0][k]) * g[0][k];
      fb += double(g[1][k]) * g[1][k];
    }
    for (size_t k = 0; k < size_t(c) * c; ++k) {
      const double diff = g[0][k] / std::sqrt(fa) - g[1][k] / std::sqrt(fb);
      d2 += diff * diff;
    }
    CHECK(std::fabs(na - 1) < 1e-6);
    CHECK(std::fabs((2 - 2 * ab) - d2) < 1e-6);
  }
  std::vector<float> zero(9, 0.f), out(6, 1.f);
  CHECK(gram_to_unit_vector(zero.data(), 3, out.data()) == 0.0);
}

TEST_CASE("search: distances on the CPU and the CUDA backend equal brute force", "[search]") {
  const std::vector<int> seg = {0, 36, 91};  // channels 8 and 10
  std::mt19937_64 rng(3);
  std::normal_distribution<double> nd(0, 1);
  auto rows = [&](int n) {
    std::vector<float> v(size_t(n) * seg.back());
    for (int r = 0; r < n; ++r)
      for (int s = 0; s < 2; ++s) {
        double ss = 0;
        for (int k = seg[s]; k < seg[s + 1]; ++k) {
          v[size_t(r) * seg.back() + k] = float(nd(rng));
          ss += double(v[size_t(r) * seg.back() + k]) * v[size_t(r) * seg.back() + k];
        }
        for (int k = seg[s]; k < seg[s + 1]; ++k) v[size_t(r) * seg.back() + k] /= std::sqrt(ss);
      }
    return v;
  };
  const int nq = 7, ne = 77;
  const auto q = rows(nq), e = rows(ne);
  std::vector<Device> devices = {Device::CPU};
  if (cuda_available()) devices.push_back(Device::CUDA);
  for (Device d : devices) {
    INFO(device_name(d));
    const auto got = texture_distances(d, q.data(), nq, e.data(), ne, seg);
    for (int i = 0; i < nq; ++i)
      for (int j = 0; j < ne; ++j) {
        double total = 0;
        for (int s = 0; s < 2; ++s) {
          double ss = 0;
          for (int k = seg[s]; k < seg[s + 1]; ++k) {
            const double diff =
                double(q[size_t(i) * seg.back() + k]) - e[size_t(j) * seg.back() + k];
            ss += diff * diff;
          }
          total += std::sqrt(ss);
        }
        CHECK(std::fabs(got[size_t(i) * ne + j] - total) < 1e-4);
      }
  }
}

TEST_CASE("search: generated texture families, top-5 from the own family, self first", "[search]") {
  // 5 families × 12 variants (the example is 20; 12 keeps the suite fast on 2 cores and
  // test_index_cli.py runs another set end to end).
  constexpr int kVariants = 12, kImages = 5 * kVariants;
  test::TempDir dir;
  const auto paths = write_families(dir, kVariants, 11);
  const std::string idx_path = dir.file("idx.h5");
  IndexUpdateReport r = build_texture_index(paths, small_settings(), idx_path, Device::CPU);
  REQUIRE(r.added == size_t(kImages));
  REQUIRE(r.skipped.empty());
  const TextureIndex idx = TextureIndex::open(idx_path);
  REQUIRE(idx.size() == size_t(kImages));
  CHECK(idx.settings().layers == std::vector<std::string>{"pool1", "pool2"});
  CHECK(idx.settings().weights_identity == "random:0");
  CHECK(idx.dim() == int(gram_vector_length(64) + gram_vector_length(128)));
  CHECK(idx.verify().empty());

  // Queries: every indexed vector; and 10 images re-extracted as a user's query would be, which
  // must reproduce their stored vectors and find themselves first.
  const std::vector<float>& q = idx.vectors();
  TextureFeatures feat(idx.settings(), Device::CPU);
  std::vector<float> fresh(size_t(10) * idx.dim());
  for (int i = 0; i < 10; ++i) {
    Tensor img = feat.load(paths[i * 6 + 3]);
    std::vector<const Tensor*> one{&img};
    feat.compute(one, fresh.data() + size_t(i) * idx.dim());
    double worst = 0;
    for (int k = 0; k < idx.dim(); ++k)
      worst = std::max(worst, double(std::fabs(fresh[size_t(i) * idx.dim() + k] -
                                               q[size_t(i * 6 + 3) * idx.dim() + k])));
    CHECK(worst < 1e-5);
  }
  TextureSearcher cpu(idx, Device::CPU);
  const auto hits = cpu.search(q.data(), kImages, 6);
  int own = 0, self_first = 0;
  for (int i = 0; i < kImages; ++i) {
    REQUIRE(hits[i].size() == 6);
    const std::string fam = family_of(paths[i]);
    if (idx.entries()[hits[i][0].entry].path == fs::absolute(paths[i]).lexically_normal().string())
      ++self_first;
    // Top 5 besides the query itself.
    int n = 0;
    for (size_t r = 0, taken = 0; r < hits[i].size() && taken < 5; ++r) {
      if (hits[i][r].entry == size_t(i)) continue;
      ++taken;
      n += family_of(idx.entries()[hits[i][r].entry].path) == fam;
    }
    own += n;
    for (size_t r = 1; r < hits[i].size(); ++r)
      CHECK(hits[i][r - 1].distance <= hits[i][r].distance);
  }
  const auto fresh_hits = cpu.search(fresh.data(), 10, 1);
  for (int i = 0; i < 10; ++i) CHECK(fresh_hits[i][0].entry == size_t(i * 6 + 3));
  INFO("top-5 own-family fraction " << own / (5.0 * kImages) << ", self first " << self_first << "/"
                                    << kImages);
  CHECK(self_first == kImages);
  CHECK(own >= 0.9 * 5 * kImages);

  // The same search on the CUDA backend (the simulator in this suite) gives the same distances.
  if (cuda_available()) {
    TextureSearcher gpu(idx, Device::CUDA);
    const auto dc = cpu.distances(q.data(), 20);
    const auto dg = gpu.distances(q.data(), 20);
    double worst = 0;
    for (size_t i = 0; i < dc.size(); ++i)
      worst = std::max(worst, double(std::fabs(dc[i] - dg[i])));
    CHECK(worst < 2e-3);
  }
}

TEST_CASE("search: add appends, keeps old entries, replaces changed images, float16 index",
          "[search]") {
  test::TempDir dir;
  const auto paths = write_families(dir, 3, 5);  // 15 images
  const std::vector<std::string> first(paths.begin(), paths.begin() + 9);
  const std::string idx_path = dir.file("idx.h5");
  build_texture_index(first, small_settings(), idx_path, Device::CPU);
  const TextureIndex before = TextureIndex::open(idx_path);
  REQUIRE(before.size() == 9);

  IndexUpdateReport r = add_to_texture_index(idx_path, paths, Device::CPU);
  CHECK(r.added == 6);
  CHECK(r.unchanged == 9);
  CHECK(r.total == 15);
  const TextureIndex after = TextureIndex::open(idx_path);
  REQUIRE(after.size() == 15);
  CHECK(after.verify().empty());
  for (size_t i = 0; i < 9; ++i) {
    CHECK(after.entries()[i].path == before.entries()[i].path);
    CHECK(after.entries()[i].checksum == before.entries()[i].checksum);
  }
  CHECK(std::equal(before.vectors().begin(), before.vectors().end(), after.vectors().begin()));

  // A changed image under an indexed path is replaced in place.
  std::mt19937_64 rng(99);
  save_png(family_texture(4, rng).view(), paths[0]);
  r = add_to_texture_index(idx_path, {paths[0]}, Device::CPU);
  CHECK(r.replaced == 1);
  CHECK(r.total == 15);
  const TextureIndex replaced = TextureIndex::open(idx_path);
  CHECK(replaced.entries()[0].checksum != before.entries()[0].checksum);

  // An unreadable file is skipped and reported, the rest indexed.
  const std::string bad = dir.file("broken.png");
  std::ofstream(bad) << "not a png";
  r = add_to_texture_index(idx_path, {bad}, Device::CPU);
  REQUIRE(r.skipped.size() == 1);
  CHECK(r.skipped[0].first.find("broken.png") != std::string::npos);

  // float16: half the bytes, distances within float16 rounding of the float32 index.
  TextureIndexSettings hs = small_settings();
  hs.half = true;
  const std::string half_path = dir.file("half.h5");
  build_texture_index(paths, hs, half_path, Device::CPU);
  const TextureIndex half = TextureIndex::open(half_path);
  const TextureIndex full = TextureIndex::open(idx_path);
  CHECK(half.settings().half);
  CHECK(half.verify().empty());
  // Every stored value is the float32 one rounded to IEEE half (relative 2^-11, subnormals
  // absolute 2^-25), and float16's 1 + 2^-10 steps never change a sign.
  REQUIRE(half.vectors().size() == full.vectors().size());
  size_t bad_round = 0, subnormal = 0;
  for (size_t i = 0; i < half.vectors().size(); ++i) {
    const double f = full.vectors()[i], h = half.vectors()[i];
    if (std::fabs(f) < 6.1e-5) ++subnormal;
    if (std::fabs(h - f) > std::ldexp(std::fabs(f), -11) + std::ldexp(1.0, -25)) ++bad_round;
  }
  CHECK(bad_round == 0);
  CHECK(subnormal > 0);  // the range where the conversion's subnormal branch runs was exercised
  TextureSearcher hsearch(half, Device::CPU), fsearch(full, Device::CPU);
  const auto dh = hsearch.distances(full.vectors().data(), 3);
  const auto df = fsearch.distances(full.vectors().data(), 3);
  for (size_t i = 0; i < dh.size(); ++i) CHECK(std::fabs(dh[i] - df[i]) < 2e-2);
}

TEST_CASE("search: corrupt index files and mismatched layers give clear errors", "[search]") {
  test::TempDir dir;
  const auto paths = write_families(dir, 1, 2);
  const std::string idx_path = dir.file("idx.h5");
  build_texture_index(paths, small_settings(), idx_path, Device::CPU);

  // Not HDF5 at all.
  const std::string junk = dir.file("junk.h5");
  std::ofstream(junk) << "this is not an index";
  std::string e = error_of([&] { TextureIndex::open(junk); });
  CHECK(e.find("junk.h5") != std::string::npos);
  CHECK(e.find("not an HDF5 file") != std::string::npos);

  // Truncated.
  const std::string cut = dir.file("cut.h5");
  fs::copy_file(idx_path, cut);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  e = error_of([&] { TextureIndex::open(cut); });
  CHECK(e.find("cut.h5") != std::string::npos);
  CHECK(!e.empty());

  // Missing file.
  e = error_of([&] { TextureIndex::open(dir.file("missing.h5")); });
  CHECK(e.find("no such file") != std::string::npos);

  // An HDF5 file that is not an index (a weights file, say).
  {
    hid_t f = H5Fcreate((dir.file("other.h5")).c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
  }
  e = error_of([&] { TextureIndex::open(dir.file("other.h5")); });
  CHECK(e.find("not a preimage texture index") != std::string::npos);

  // Flipped bytes inside an entry: opens, verify names the entry.
  const std::string flipped = dir.file("flipped.h5");
  fs::copy_file(idx_path, flipped);
  {
    hid_t f = H5Fopen(flipped.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "/vectors", H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    const hsize_t start[2] = {2, 100}, count[2] = {1, 1};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hsize_t one = 1;
    hid_t mem = H5Screate_simple(1, &one, nullptr);
    const float v = 0.5f;
    H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &v);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
  }
  const TextureIndex bad = TextureIndex::open(flipped);
  const auto problems = bad.verify();
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("entry 2") != std::string::npos);
  CHECK(problems[0].find("checksum") != std::string::npos);
  e = error_of([&] { add_to_texture_index(flipped, paths, Device::CPU); });
  CHECK(e.find("fails verification") != std::string::npos);

  // Layers: the request must match the index.
  const TextureIndex idx = TextureIndex::open(idx_path);
  CHECK_NOTHROW(idx.check_layers({"pool1", "pool2"}));
  e = error_of([&] { idx.check_layers({"pool1", "relu3_1"}); });
  CHECK(e.find("relu3_1") != std::string::npos);
  CHECK(e.find("pool1,pool2") != std::string::npos);

  // Unknown layer at build time.
  TextureIndexSettings s = small_settings();
  s.layers = {"pool1", "pool9"};
  e = error_of([&] { build_texture_index(paths, s, dir.file("x.h5"), Device::CPU); });
  CHECK(e.find("pool9") != std::string::npos);
  CHECK(!fs::exists(dir.file("x.h5")));

  // Nothing readable: error, no file.
  e = error_of([&] {
    build_texture_index({dir.file("junk.h5")}, small_settings(), dir.file("y.h5"), Device::CPU);
  });
  CHECK(e.find("no readable image") != std::string::npos);
  CHECK(!fs::exists(dir.file("y.h5")));
}
