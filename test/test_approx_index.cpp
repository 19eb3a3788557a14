// Approximate texture index (preimage/approx_index.h): the compact projection against an
// independent SVD, FAISS search (HNSW, IVF-PQ) against brute force over the same descriptors,
// append-only segments (files untouched, replaced entries superseded), corrupt and missing
// files, the writer lock. The CLI side (kill -9 during add, a refused second writer) is
// test/test_index_cli.py (ctest index_cli); real-image purity is ctest texture_purity.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop

#include "engine/features/index/index_internal.h"
#include "preimage/approx_index.h"
#include "preimage/error.h"
#include "test/temp_dir.h"

using namespace preimage;
using preimage::test::TempDir;
namespace fs = std::filesystem;

namespace {

// Clustered compact descriptors with two layer parts of sizes a, b (unit per part, ×1/√2).
std::vector<float> clustered(size_t n, int a, int b, uint64_t seed, int clusters = 25) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  const int d = a + b;
  std::vector<float> centres(size_t(clusters) * d);
  for (auto& x : centres) x = nd(rng);
  std::vector<float> v(n * d);
  for (size_t i = 0; i < n; ++i) {
    const int c = int(rng() % uint64_t(clusters));
    for (int k = 0; k < d; ++k) v[i * d + k] = centres[size_t(c) * d + k] + 0.5f * nd(rng);
    for (auto [lo, hi] : {std::pair{0, a}, std::pair{a, d}}) {
      double ss = 0;
      for (int k = lo; k < hi; ++k) ss += double(v[i * d + k]) * v[i * d + k];
      for (int k = lo; k < hi; ++k) v[i * d + k] = float(v[i * d + k] / std::sqrt(ss * 2));
    }
  }
  return v;
}

std::vector<TextureEntry> entries_for(size_t n, const std::string& prefix) {
  std::vector<TextureEntry> e(n);
  for (size_t i = 0; i < n; ++i) {
    e[i].path = "/data/" + prefix + std::to_string(i) + ".png";
    e[i].height = 100 + int(i % 7);
    e[i].width = 90;
    e[i].image_sha256 = std::string(64, "0123456789abcdef"[i % 16]);
  }
  return e;
}

// A projection object of the given compact layout (identity-free: these tests feed compact
// descriptors directly).
CompactProjection layout(int a, int b) {
  CompactProjection p;
  p.segments_ = {0, 10, 25};  // channels 4, 5 (settings()): C(C+1)/2 = 10, 15
  p.compact_segments_ = {0, a, a + b};
  for (int l = 0; l < 2; ++l) {
    const int D = l ? 15 : 10;
    p.mean_.emplace_back(size_t(D), 0.f);
    p.basis_.emplace_back(size_t(l ? b : a) * D, 0.1f);
  }
  return p;
}

TextureIndexSettings settings() {
  TextureIndexSettings s;
  s.channels = {4, 5};  // C(C+1)/2 = 10, 15: only stored, not used by compact search
  s.weights_identity = "random:0";
  return s;
}

std::vector<std::vector<size_t>> brute_force(const std::vector<float>& e, size_t n, const float* q,
                                             int nq, const std::vector<int>& cs, int k) {
  const int d = cs.back();
  std::vector<std::vector<size_t>> out(static_cast<size_t>(nq));
  for (int i = 0; i < nq; ++i) {
    std::vector<std::pair<float, size_t>> all;
    for (size_t j = 0; j < n; ++j)
      all.emplace_back(compact_distance(q + size_t(i) * d, e.data() + j * d, cs), j);
    std::partial_sort(all.begin(), all.begin() + k, all.end());
    for (int r = 0; r < k; ++r) out[size_t(i)].push_back(all[size_t(r)].second);
  }
  return out;
}

}  // namespace

TEST_CASE("approx index: parse_index_type names the flag", "[approx]") {
  CHECK(parse_index_type("hnsw") == IndexType::Hnsw);
  CHECK(parse_index_type("ivfpq") == IndexType::IvfPq);
  CHECK(parse_index_type("exact") == IndexType::Exact);
  CHECK_THROWS_WITH(parse_index_type("lsh"),
                    Catch::Contains("--index-type") && Catch::Contains("lsh"));
}

TEST_CASE("approx index: compact projection spans the top principal directions (vs Eigen SVD)",
          "[approx]") {
  // Full "Gram vectors" of two layers (odd sizes 37 and 53) from a rank-6 model with distinct
  // singular values; the projection's rows must span the top-d right singular vectors of the
  // centred signed-square-rooted data, which an independent full SVD computes.
  const std::vector<int> seg = {0, 37, 90};
  const int n = 83, d = 10;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> nd;
  std::vector<float> v(size_t(n) * 90);
  Eigen::MatrixXd basis = Eigen::MatrixXd::NullaryExpr(90, 6, [&] { return nd(rng); });
  for (int i = 0; i < n; ++i) {
    Eigen::VectorXd z(6);
    for (int j = 0; j < 6; ++j) z(j) = nd(rng) * (6.0 - j);
    const Eigen::VectorXd x = basis * z;
    for (int l = 0; l < 2; ++l) {
      double ss = 0;
      for (int k = seg[l]; k < seg[l + 1]; ++k) ss += x(k) * x(k);
      for (int k = seg[l]; k < seg[l + 1]; ++k) v[size_t(i) * 90 + k] = float(x(k) / std::sqrt(ss));
    }
  }
  const CompactProjection p = CompactProjection::fit(v.data(), n, seg, d, 11);
  REQUIRE(p.dim() == d);
  REQUIRE(p.compact_segments() == std::vector<int>{0, 5, 10});
  for (int l = 0; l < 2; ++l) {
    const int D = seg[l + 1] - seg[l], dl = 5;
    Eigen::MatrixXd X(n, D);
    for (int i = 0; i < n; ++i) {
      double ss = 0;
      for (int k = 0; k < D; ++k) ss += std::fabs(v[size_t(i) * 90 + seg[l] + k]);
      for (int k = 0; k < D; ++k) {
        const double a = v[size_t(i) * 90 + seg[l] + k];
        X(i, k) = (a < 0 ? -1 : 1) * std::sqrt(std::fabs(a) / ss);
      }
    }
    const Eigen::RowVectorXd mu = X.colwise().mean();
    for (int k = 0; k < D; ++k) CHECK(p.mean_[size_t(l)][size_t(k)] == Approx(mu(k)).margin(1e-6));
    X.rowwise() -= mu;
    Eigen::BDCSVD<Eigen::MatrixXd> svd(X, Eigen::ComputeThinV);
    const Eigen::MatrixXd Vref = svd.matrixV().leftCols(dl);  // D × dl
    Eigen::MatrixXd W(dl, D);
    for (int j = 0; j < dl; ++j)
      for (int k = 0; k < D; ++k) W(j, k) = p.basis_[size_t(l)][size_t(j) * D + k];
    // Orthonormal rows, and the same subspace: ‖W Vref‖_F² = dl.
    CHECK((W * W.transpose() - Eigen::MatrixXd::Identity(dl, dl)).norm() < 1e-4);
    CHECK(std::fabs((W * Vref).squaredNorm() - dl) < 1e-3);
  }
  // apply(): per-layer norms 1/√L; the compact distance of two rows equals the distance of
  // their normalized projections computed here with the reference basis.
  std::vector<float> c(size_t(n) * d, std::nanf(""));
  p.apply(v.data(), n, c.data());
  for (int i = 0; i < n; ++i)
    for (int l = 0; l < 2; ++l) {
      double ss = 0;
      for (int k = 5 * l; k < 5 * l + 5; ++k)
        ss += double(c[size_t(i) * d + k]) * c[size_t(i) * d + k];
      CHECK(std::sqrt(ss * 2) == Approx(1.0).margin(1e-5));
    }
  CHECK(compact_distance(c.data(), c.data(), p.compact_segments()) == 0.f);
  CHECK(compact_distance(c.data(), c.data() + d, p.compact_segments()) > 0.f);
}

TEST_CASE("approx index: FAISS search (hnsw, ivfpq) against brute force, append, verify",
          "[approx]") {
  for (IndexType type : {IndexType::Hnsw, IndexType::IvfPq}) {
    DYNAMIC_SECTION(index_type_name(type)) {
      TempDir dir;
      const std::string path = dir.file("idx.h5");
      const int a = 13, b = 19, d = a + b;  // odd part sizes
      const size_t n = 3001;
      const auto v = clustered(n, a, b, 5);
      const auto proj = layout(a, b);
      ApproxIndexParams params;
      params.dim = d;
      params.pq_m = 8;
      ApproxTextureIndex::create(path, type, settings(), proj, params, entries_for(n, "e"),
                                 v.data());
      ApproxTextureIndex idx = ApproxTextureIndex::open(path);
      REQUIRE(idx.size() == n);
      REQUIRE(idx.dim() == d);
      CHECK(idx.verify().empty());
      // Queries: 40 entries themselves (must come first) and 40 fresh points.
      const auto fresh = clustered(40, a, b, 99);
      std::vector<float> q(v.begin(), v.begin() + 40 * d);
      q.insert(q.end(), fresh.begin(), fresh.end());
      const auto hits = idx.search(q.data(), 80, 10);
      const auto truth = brute_force(v, n, q.data(), 80, proj.compact_segments(), 10);
      double rec = 0;
      for (int i = 0; i < 80; ++i) {
        REQUIRE(hits[size_t(i)].size() == 10);
        if (i < 40) CHECK(hits[size_t(i)][0].entry == size_t(i));
        for (size_t r = 0; r < 10; ++r) {
          const auto& h = hits[size_t(i)][r];
          // Reported distances are the compact distance (float16-stored entries).
          CHECK(h.distance ==
                Approx(compact_distance(q.data() + size_t(i) * d, v.data() + h.entry * d,
                                        proj.compact_segments()))
                    .margin(3e-3));
          if (r) CHECK(hits[size_t(i)][r - 1].distance <= h.distance);
          rec += std::count(truth[size_t(i)].begin(), truth[size_t(i)].end(), h.entry);
        }
      }
      rec /= 800;
      INFO("recall@10 " << rec);
      CHECK(rec >= 0.9);

      // Append: 50 new entries and a replacement of entry 7 (same path, new vector); the
      // committed files are not touched.
      std::map<std::string, fs::file_time_type> before;
      for (auto& f : fs::directory_iterator(path + ".d"))
        before[f.path().string()] = f.last_write_time();
      auto more = entries_for(50, "new");
      more.push_back(entries_for(8, "e")[7]);
      more.back().image_sha256 = std::string(64, 'f');
      auto mv = clustered(51, a, b, 123);
      ApproxTextureIndex::append(path, more, mv.data());
      for (auto& [f, t] : before) CHECK(fs::last_write_time(f) == t);
      ApproxTextureIndex idx2 = ApproxTextureIndex::open(path);
      CHECK(idx2.segment_count() == 2);
      CHECK(idx2.size() == n + 50);
      CHECK(idx2.verify().empty());
      size_t seven = 0;
      for (size_t i = 0; i < idx2.size(); ++i)
        if (idx2.entries()[i].path == "/data/e7.png") {
          ++seven;
          CHECK(idx2.entries()[i].image_sha256 == std::string(64, 'f'));
        }
      CHECK(seven == 1);
      const auto h2 = idx2.search(mv.data() + 50 * d, 1, 3);
      REQUIRE(!h2[0].empty());
      CHECK(idx2.entries()[h2[0][0].entry].path == "/data/e7.png");
      CHECK(h2[0][0].distance < 5e-3f);
      const auto h3 = idx2.search(mv.data() + 3 * d, 1, 1);
      CHECK(idx2.entries()[h3[0][0].entry].path == "/data/new3.png");
    }
  }
}

TEST_CASE("approx index: corrupt, truncated and missing files give errors naming them",
          "[approx]") {
  TempDir dir;
  const std::string path = dir.file("idx.h5");
  const auto v = clustered(300, 8, 8, 1);
  ApproxIndexParams params;
  params.dim = 16;
  params.pq_m = 4;
  ApproxTextureIndex::create(path, IndexType::IvfPq, settings(), layout(8, 8), params,
                             entries_for(300, "e"), v.data());
  std::string seg;
  for (auto& f : fs::directory_iterator(path + ".d"))
    if (f.path().filename().string().rfind("seg-", 0) == 0) seg = f.path().string();
  REQUIRE(!seg.empty());
  const std::string segname = fs::path(seg).filename().string();

  SECTION("a flipped byte in the FAISS blob") {
    // The blob is the bulk of the file: a byte in its middle.
    std::vector<char> bytes;
    {
      std::ifstream in(seg, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    // Find a stretch of the file that is neither HDF5 metadata nor strings: flip a byte inside
    // the blob by locating FAISS's IVF-PQ tag ("IxRF" refine wrapper) and going past it.
    const std::string tag = "IxRF";
    auto it = std::search(bytes.begin(), bytes.end(), tag.begin(), tag.end());
    REQUIRE(it != bytes.end());
    *(it + 300) ^= 0x5A;
    {
      std::ofstream out(seg, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), long(bytes.size()));
    }
    CHECK_THROWS_WITH(ApproxTextureIndex::open(path),
                      Catch::Contains(segname) && Catch::Contains("checksum"));
  }
  SECTION("a truncated segment") {
    fs::resize_file(seg, fs::file_size(seg) / 2);
    CHECK_THROWS_WITH(ApproxTextureIndex::open(path), Catch::Contains(segname));
  }
  SECTION("a missing segment") {
    fs::remove(seg);
    CHECK_THROWS_WITH(ApproxTextureIndex::open(path), Catch::Contains(segname));
  }
  SECTION("the manifest is not an approximate index") {
    std::ofstream(path, std::ios::trunc) << "junk";
    CHECK_THROWS_WITH(ApproxTextureIndex::open(path), Catch::Contains("idx.h5"));
    CHECK_THROWS_WITH(texture_index_type(path), Catch::Contains("idx.h5"));
  }
  SECTION("TextureIndex::open refuses it clearly") {
    CHECK_THROWS_WITH(TextureIndex::open(path),
                      Catch::Contains("approximate (ivfpq)") && Catch::Contains("idx.h5"));
    CHECK(texture_index_type(path) == IndexType::IvfPq);
  }
}

TEST_CASE("approx index: a second writer is refused while one holds the lock", "[approx]") {
  TempDir dir;
  const std::string path = dir.file("idx.h5");
  {
    index_internal::WriterLock first(path);
    CHECK_THROWS_WITH(index_internal::WriterLock(path),
                      Catch::Contains("being written by another process") &&
                          Catch::Contains("idx.h5.lock") &&
                          Catch::Contains(std::to_string(::getpid())));
  }
  index_internal::WriterLock again(path);  // released with the first
}
