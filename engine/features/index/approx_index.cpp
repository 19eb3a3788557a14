// Approximate texture index on FAISS (preimage/approx_index.h): compact descriptors, the
// manifest + immutable base/segment files, search over the segments, verification.
#include "preimage/approx_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexRefine.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/clone_index.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <unistd.h>

// Eigen's AVX-512 paths trip g++ 12's -Wmaybe-uninitialized inside its own headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "engine/features/index/index_internal.h"
#include "engine/io/fnv_hash.h"
#include "engine/io/h5_util.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"

namespace preimage {
namespace {

namespace fs = std::filesystem;
using namespace index_internal;
using idx_t = faiss::Index::idx_t;

constexpr int64_t kVersion = 2;

std::string ctx(const std::string& p) {
  return "index file '" + p + "'";
}

// ---- raw byte datasets (FAISS blobs) --------------------------------------------------------

void write_blob(h5::File& f, const std::string& name, const std::vector<uint8_t>& data) {
  h5::Quiet q;
  const hsize_t dims[1] = {hsize_t(data.size())};
  h5::Id space(H5Screate_simple(1, dims, nullptr));
  h5::Id ds(H5Dcreate2(f.id(), name.c_str(), H5T_STD_U8LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT));
  if (!ds.valid()) f.fail("cannot create dataset '" + name + "'");
  if (!data.empty() &&
      H5Dwrite(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0) {
    const std::string why = h5::last_error();
    f.fail("cannot write dataset '" + name + "'" + (why.empty() ? "" : " (" + why + ")"));
  }
}

std::vector<uint8_t> read_blob(const h5::File& f, const std::string& name) {
  const auto info = f.dataset_info(name);
  if (info.shape.size() != 1 || info.type_name != "uint8")
    f.fail("dataset '" + name + "' has type " + info.type_name + " " + h5::dims_str(info.shape) +
           ", expected uint8 (N)");
  f.require_stored(name);
  std::vector<uint8_t> out(size_t(info.shape[0]));
  h5::Quiet q;
  h5::Id ds(H5Dopen2(f.id(), name.c_str(), H5P_DEFAULT));
  if (!ds.valid() || (!out.empty() && H5Dread(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL,
                                              H5P_DEFAULT, out.data()) < 0))
    f.fail("cannot read dataset '" + name + "'");
  return out;
}

std::string fnv_hex(const std::vector<uint8_t>& b) {
  Fnv f;
  f.add(b.data(), b.size());
  return hex64(f.h);
}

std::vector<uint8_t> serialize(const faiss::Index& index) {
  faiss::VectorIOWriter w;
  faiss::write_index(&index, &w);
  return std::move(w.data);
}

std::unique_ptr<faiss::Index> deserialize(const std::vector<uint8_t>& b, const std::string& what) {
  faiss::VectorIOReader r;
  r.data = b;
  try {
    return std::unique_ptr<faiss::Index>(faiss::read_index(&r));
  } catch (const faiss::FaissException& e) {
    throw Error(what + ": FAISS cannot read its index (" + e.what() + ")");
  }
}

// The float32 vectors the index holds (HNSW storage or the IVF-PQ's refinement), as search
// re-ranks with them.
void reconstruct(const faiss::Index& index, int64_t row, float* out) {
  index.reconstruct(row, out);
}

std::string random_id() {
  std::random_device rd;
  const uint64_t t = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  return hex64((uint64_t(rd()) << 32 ^ rd()) ^ t ^ uint64_t(::getpid()));
}

std::string dir_of(const std::string& index) {
  return index + ".d";
}

// ---- the manifest ---------------------------------------------------------------------------

struct Manifest {
  TextureIndexSettings settings;
  std::vector<int> segments{0};
  IndexType type = IndexType::Hnsw;
  ApproxIndexParams params;
  std::string base_file, base_fnv;
  std::vector<std::string> seg_files, seg_fnv;
  std::vector<int64_t> seg_rows;
};

std::vector<int64_t> params_vector(const ApproxIndexParams& p) {
  return {p.dim,   p.sample, p.hnsw_m, p.ef_construction, p.ef_search,
          p.nlist, p.pq_m,   p.nprobe, p.rerank,          int64_t(p.seed)};
}

void write_manifest(const std::string& path, const Manifest& m) {
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, ctx(tmp));
    write_settings(f, m.settings, m.segments);
    f.write_attr_int64s("/", "format_version", {kVersion});
    f.write_attr_string("/", "index_type", index_type_name(m.type));
    f.write_attr_string("/", "dtype", "compact");
    f.write_attr_int64s("/", "params", params_vector(m.params));
    f.write_attr_string(
        "/", "params_names",
        "dim sample hnsw_m ef_construction ef_search nlist pq_m nprobe rerank seed");
    f.write_attr_string("/", "base_file", m.base_file);
    f.write_attr_string("/", "base_fnv", m.base_fnv);
    f.write_attr_string("/", "distance",
                        "sum over layers of ||p1 - p2|| of the compact descriptors (signed-sqrt "
                        "Gram vectors, PCA per layer, normalized); see preimage/approx_index.h");
    f.write_strings("/segment_files", m.seg_files);
    f.write_strings("/segment_fnv", m.seg_fnv);
    f.write(std::string("/segment_rows"), m.seg_rows.data(), {int64_t(m.seg_rows.size())});
    f.close();
  });
}

Manifest read_manifest(const std::string& path) {
  h5::File f = h5::File::open(path, ctx(path));
  if (!f.has_attr("/", "format") || f.read_attr_string("/", "format") != "preimage-texture-index")
    f.fail("not a preimage texture index (attribute 'format')");
  const auto v = f.read_attr_int64s("/", "format_version");
  if (v.size() != 1 || v[0] != kVersion || !f.has_attr("/", "index_type"))
    f.fail("is not an approximate texture index (format_version " +
           (v.empty() ? std::string("?") : std::to_string(v[0])) + ")");
  Manifest m;
  read_settings(f, m.settings, m.segments);
  m.type = parse_index_type(f.read_attr_string("/", "index_type"));
  if (m.type == IndexType::Exact) f.fail("attribute 'index_type' is 'exact' in a version 2 file");
  const auto p = f.read_attr_int64s("/", "params");
  if (p.size() != 10)
    f.fail("attribute 'params' holds " + std::to_string(p.size()) + " values, expected 10");
  auto in = [&](int64_t x, int64_t lo, int64_t hi, const char* name) {
    if (x < lo || x > hi)
      f.fail("attribute 'params': " + std::string(name) + " = " + std::to_string(x) +
             " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return int(x);
  };
  m.params.dim = in(p[0], 1, 4096, "dim");
  m.params.sample = in(p[1], 1, 1 << 30, "sample");
  m.params.hnsw_m = in(p[2], 2, 256, "hnsw_m");
  m.params.ef_construction = in(p[3], 1, 1 << 16, "ef_construction");
  m.params.ef_search = in(p[4], 1, 1 << 16, "ef_search");
  m.params.nlist = in(p[5], 0, 1 << 24, "nlist");
  m.params.pq_m = in(p[6], 1, 4096, "pq_m");
  m.params.nprobe = in(p[7], 1, 1 << 24, "nprobe");
  m.params.rerank = in(p[8], 1, 1024, "rerank");
  m.params.seed = uint64_t(p[9]);
  m.base_file = f.read_attr_string("/", "base_file");
  m.base_fnv = f.read_attr_string("/", "base_fnv");
  m.seg_files = f.read_strings("/segment_files");
  m.seg_fnv = f.read_strings("/segment_fnv");
  m.seg_rows = f.read_vector<int64_t>("/segment_rows");
  if (m.seg_fnv.size() != m.seg_files.size() || m.seg_rows.size() != m.seg_files.size())
    f.fail("datasets '/segment_files', '/segment_fnv' and '/segment_rows' have different lengths");
  auto plain = [&](const std::string& name) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      f.fail("names a data file '" + name + "' outside its directory");
  };
  plain(m.base_file);
  for (const auto& s : m.seg_files) plain(s);
  return m;
}

// Removes files of <index>.d that the committed manifest does not name (left by killed writers
// or by the builds it replaced). Called under the writer lock.
void remove_unreferenced(const std::string& index, const Manifest* m) {
  std::set<std::string> keep;
  if (m) {
    keep.insert(m->base_file);
    keep.insert(m->seg_files.begin(), m->seg_files.end());
  }
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir_of(index), ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!keep.count(name)) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

// ---- FAISS index of one segment ------------------------------------------------------------

std::unique_ptr<faiss::Index> trained_ivfpq(const ApproxIndexParams& p, int d, const float* x,
                                            size_t n) {
  int nlist = p.nlist > 0 ? p.nlist : int(std::lround(4 * std::sqrt(double(n))));
  nlist = std::max(1, std::min<int>(nlist, int(n / 39)));
  // 8-bit PQ codebooks need 256 training points; smaller builds get fewer bits.
  int nbits = 8;
  while (nbits > 1 && (size_t(1) << nbits) > n) --nbits;
  int m = std::min(p.pq_m, d);
  while (d % m) --m;
  auto* quantizer = new faiss::IndexFlatL2(d);
  auto ivf =
      std::make_unique<faiss::IndexIVFPQ>(quantizer, d, size_t(nlist), size_t(m), size_t(nbits));
  ivf->own_fields = true;
  ivf->cp.seed = int(p.seed);
  ivf->pq.cp.seed = int(p.seed);
  // Small builds train on fewer points than FAISS's advice (39 per centroid): no warning spam.
  ivf->cp.min_points_per_centroid = 1;
  ivf->pq.cp.min_points_per_centroid = 1;
  ivf->train(idx_t(n), x);
  return ivf;
}

std::unique_ptr<faiss::Index> segment_index(IndexType type, const ApproxIndexParams& p, int d,
                                            const faiss::Index* trained, const float* x, size_t n) {
  if (type == IndexType::Hnsw) {
    // Float32 storage: Debian's libfaiss is built without SIMD, and its float16 distance is a
    // scalar decode loop (63 % of a 10^6 build in perf), while the float32 one is vectorized.
    auto h = std::make_unique<faiss::IndexHNSWFlat>(d, p.hnsw_m);
    h->hnsw.efConstruction = p.ef_construction;
    h->hnsw.efSearch = p.ef_search;
    h->add(idx_t(n), x);
    return h;
  }
  auto* base = faiss::clone_index(trained);
  auto* fine = new faiss::IndexScalarQuantizer(d, faiss::ScalarQuantizer::QT_fp16);
  auto r = std::make_unique<faiss::IndexRefine>(base, fine);
  r->own_fields = true;
  r->own_refine_index = true;
  r->k_factor = float(p.rerank);
  r->add(idx_t(n), x);
  return r;
}

// Writes one segment file (entries + FAISS index) under a temporary name, fsyncs, renames.
// Fills in the entries' checksums (over the vectors as FAISS returns them). Returns the FNV of
// the FAISS blob.
void pause_ms(int ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

std::string write_segment(const std::string& file, std::vector<TextureEntry>& entries,
                          const faiss::Index& index, int d, int delay_ms) {
  std::vector<float> v(static_cast<size_t>(d));
  for (size_t i = 0; i < entries.size(); ++i) {
    reconstruct(index, int64_t(i), v.data());
    entries[i].checksum =
        entry_checksum(entries[i], reinterpret_cast<const unsigned char*>(v.data()), v.size() * 4);
  }
  const std::vector<uint8_t> blob = serialize(index);
  write_atomically(file, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, ctx(tmp));
    f.write_attr_string("/", "format", "preimage-texture-index-segment");
    f.write_attr_int64s("/", "rows", {int64_t(entries.size())});
    std::vector<std::string> paths, shas, sums;
    std::vector<int64_t> sizes;
    for (const auto& e : entries) {
      paths.push_back(e.path);
      shas.push_back(e.image_sha256);
      sums.push_back(e.checksum);
      sizes.push_back(e.height);
      sizes.push_back(e.width);
    }
    f.write_strings("/paths", paths);
    f.write(std::string("/image_size"), sizes.data(), {int64_t(entries.size()), 2});
    f.write_strings("/image_sha256", shas);
    f.write_strings("/checksum", sums);
    pause_ms(delay_ms);  // test hook: a kill while the temporary segment exists
    write_blob(f, "/faiss", blob);
    f.close();
  });
  return fnv_hex(blob);
}

}  // namespace

// ---- index types -----------------------------------------------------------------------------

IndexType parse_index_type(const std::string& name) {
  if (name == "exact") return IndexType::Exact;
  if (name == "ivfpq") return IndexType::IvfPq;
  if (name == "hnsw") return IndexType::Hnsw;
  throw Error("--index-type: expected exact, ivfpq or hnsw, got '" + name + "'");
}

const char* index_type_name(IndexType type) {
  switch (type) {
    case IndexType::Exact:
      return "exact";
    case IndexType::IvfPq:
      return "ivfpq";
    case IndexType::Hnsw:
      return "hnsw";
  }
  return "?";
}

IndexType texture_index_type(const std::string& path) {
  h5::File f = h5::File::open(path, ctx(path));
  if (!f.has_attr("/", "format") || f.read_attr_string("/", "format") != "preimage-texture-index")
    f.fail("not a preimage texture index (attribute 'format' is not 'preimage-texture-index')");
  if (!f.has_attr("/", "index_type")) return IndexType::Exact;
  try {
    return parse_index_type(f.read_attr_string("/", "index_type"));
  } catch (const Error&) {
    f.fail("attribute 'index_type' is '" + f.read_attr_string("/", "index_type") +
           "', expected exact, ivfpq or hnsw");
  }
}

// ---- compact projection ------------------------------------------------------------------------

namespace {

// Signed square root of one layer's unit vector, renormalized, into out (double).
void signed_sqrt(const float* v, int n, double* out) {
  double ss = 0;
  for (int i = 0; i < n; ++i) {
    const double a = std::sqrt(std::fabs(double(v[i])));
    out[i] = v[i] < 0 ? -a : a;
    ss += out[i] * out[i];
  }
  const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
  for (int i = 0; i < n; ++i) out[i] *= inv;
}

}  // namespace

CompactProjection CompactProjection::fit(const float* vectors, size_t n,
                                         const std::vector<int>& segments, int dim, uint64_t seed) {
  const int L = int(segments.size()) - 1;
  require(L >= 1 && n >= 1, "compact projection: no vectors to learn from");
  require(dim >= L, "--dim: at least one compact value per layer (" + std::to_string(L) +
                        " layers), got " + std::to_string(dim));
  CompactProjection p;
  p.segments_ = segments;
  for (int l = 0; l < L; ++l)
    p.compact_segments_.push_back(p.compact_segments_.back() + dim / L + (l < dim % L ? 1 : 0));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  using Mat = Eigen::MatrixXd;
  for (int l = 0; l < L; ++l) {
    const int D = segments[l + 1] - segments[l];
    const int d = p.compact_segments_[l + 1] - p.compact_segments_[l];
    Mat X(Eigen::Index(n), D);
    for (size_t i = 0; i < n; ++i) {
      std::vector<double> row(static_cast<size_t>(D));
      signed_sqrt(vectors + i * size_t(segments.back()) + segments[l], D, row.data());
      for (int k = 0; k < D; ++k) X(Eigen::Index(i), k) = row[size_t(k)];
    }
    const Eigen::RowVectorXd mu = X.colwise().mean();
    X.rowwise() -= mu;
    // Randomized range finder with two power iterations (Halko et al.), then the small SVD.
    const int r = std::min<int>(d + 10, std::min<int>(D, int(n)));
    Mat omega(D, r);
    for (Eigen::Index i = 0; i < omega.size(); ++i) omega.data()[i] = nd(rng);
    Mat Y = X * omega;
    for (int it = 0; it < 2; ++it) {
      Eigen::HouseholderQR<Mat> qr(Y);
      Y = qr.householderQ() * Mat::Identity(Y.rows(), r);
      Mat Z = X.transpose() * Y;
      Y = X * Z;
    }
    Eigen::HouseholderQR<Mat> qr(Y);
    const Mat Q = qr.householderQ() * Mat::Identity(Y.rows(), r);
    const Mat B = Q.transpose() * X;  // r × D
    Eigen::JacobiSVD<Mat> svd(B, Eigen::ComputeThinV);
    const auto& s = svd.singularValues();
    const Mat& V = svd.matrixV();  // D × r
    p.mean_.emplace_back(mu.data(), mu.data() + D);
    std::vector<float> basis(size_t(d) * D, 0.f);
    const double smax = s.size() ? s(0) : 0.0;
    for (int j = 0; j < std::min<int>(d, int(s.size())); ++j) {
      if (!(s(j) > 1e-6 * smax)) break;  // beyond the sample's rank: zero rows
      for (int k = 0; k < D; ++k) basis[size_t(j) * D + k] = float(V(k, j));
    }
    p.basis_.push_back(std::move(basis));
  }
  return p;
}

void CompactProjection::apply(const float* full, size_t n, float* out) const {
  const int L = int(segments_.size()) - 1;
  const int dim = this->dim(), fd = full_dim();
  const double scale = 1.0 / std::sqrt(double(L));
#pragma omp parallel for schedule(static) if (n > 16)
  for (long i = 0; i < long(n); ++i) {
    std::vector<double> s;
    for (int l = 0; l < L; ++l) {
      const int D = segments_[l + 1] - segments_[l];
      const int d = compact_segments_[l + 1] - compact_segments_[l];
      s.resize(size_t(D));
      signed_sqrt(full + size_t(i) * fd + segments_[l], D, s.data());
      for (int k = 0; k < D; ++k) s[size_t(k)] -= mean_[size_t(l)][size_t(k)];
      float* o = out + size_t(i) * dim + compact_segments_[l];
      double ss = 0;
      for (int j = 0; j < d; ++j) {
        const float* b = basis_[size_t(l)].data() + size_t(j) * D;
        double acc = 0;
        for (int k = 0; k < D; ++k) acc += double(b[k]) * s[size_t(k)];
        o[j] = float(acc);
        ss += acc * acc;
      }
      const double inv = ss > 0 ? scale / std::sqrt(ss) : 0.0;
      for (int j = 0; j < d; ++j) o[j] = float(o[j] * inv);
    }
  }
}

float compact_distance(const float* a, const float* b, const std::vector<int>& cs) {
  const int L = int(cs.size()) - 1;
  double sum = 0;
  for (int l = 0; l < L; ++l) {
    double ss = 0;
    for (int k = cs[l]; k < cs[l + 1]; ++k) {
      const double t = double(a[k]) - b[k];
      ss += t * t;
    }
    sum += std::sqrt(ss);
  }
  return float(sum * std::sqrt(double(L)));
}

// ---- the index -------------------------------------------------------------------------------

struct ApproxTextureIndex::Impl {
  std::string path;
  Manifest m;
  CompactProjection projection;
  std::unique_ptr<faiss::Index> trained;  // ivfpq: the trained empty IVF-PQ
  struct Segment {
    std::vector<TextureEntry> entries;
    std::unique_ptr<faiss::Index> index;
    std::vector<int64_t> live;  // row → index into entries() of the live entry, or -1
    size_t dead = 0;
  };
  std::vector<Segment> segs;
  std::vector<TextureEntry> live;
  size_t bytes = 0;
};

ApproxTextureIndex::ApproxTextureIndex() : impl_(std::make_unique<Impl>()) {}
ApproxTextureIndex::~ApproxTextureIndex() = default;
ApproxTextureIndex::ApproxTextureIndex(ApproxTextureIndex&&) noexcept = default;
ApproxTextureIndex& ApproxTextureIndex::operator=(ApproxTextureIndex&&) noexcept = default;

const std::string& ApproxTextureIndex::path() const {
  return impl_->path;
}
IndexType ApproxTextureIndex::type() const {
  return impl_->m.type;
}
const TextureIndexSettings& ApproxTextureIndex::settings() const {
  return impl_->m.settings;
}
const std::vector<int>& ApproxTextureIndex::segments() const {
  return impl_->m.segments;
}
const CompactProjection& ApproxTextureIndex::projection() const {
  return impl_->projection;
}
const ApproxIndexParams& ApproxTextureIndex::params() const {
  return impl_->m.params;
}
const std::vector<TextureEntry>& ApproxTextureIndex::entries() const {
  return impl_->live;
}
size_t ApproxTextureIndex::size() const {
  return impl_->live.size();
}
int ApproxTextureIndex::dim() const {
  return impl_->projection.dim();
}
size_t ApproxTextureIndex::segment_count() const {
  return impl_->segs.size();
}
size_t ApproxTextureIndex::bytes_on_disk() const {
  return impl_->bytes;
}

namespace {

void write_base(const std::string& file, IndexType type, const CompactProjection& p,
                const faiss::Index* trained, std::string& fnv) {
  std::vector<uint8_t> blob;
  if (type == IndexType::IvfPq) blob = serialize(*trained);
  // The projection's floats are part of the checksum too: a flipped bit there would silently
  // change every query.
  Fnv h;
  for (size_t l = 0; l < p.mean_.size(); ++l) {
    h.add(p.mean_[l].data(), p.mean_[l].size() * 4);
    h.add(p.basis_[l].data(), p.basis_[l].size() * 4);
  }
  h.add(blob.data(), blob.size());
  fnv = hex64(h.h);
  write_atomically(file, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, ctx(tmp));
    f.write_attr_string("/", "format", "preimage-texture-index-base");
    std::vector<int64_t> cs(p.compact_segments_.begin(), p.compact_segments_.end());
    f.write_attr_int64s("/", "compact_segments", cs);
    for (size_t l = 0; l < p.mean_.size(); ++l) {
      const int64_t D = int64_t(p.mean_[l].size());
      const int64_t d = cs[l + 1] - cs[l];
      f.write("/projection/mean_" + std::to_string(l), p.mean_[l].data(), {D});
      f.write("/projection/basis_" + std::to_string(l), p.basis_[l].data(), {d, D});
    }
    write_blob(f, "/faiss_trained", blob);
    f.close();
  });
}

}  // namespace

void ApproxTextureIndex::create(const std::string& path, IndexType type,
                                const TextureIndexSettings& settings,
                                const CompactProjection& projection,
                                const ApproxIndexParams& params, std::vector<TextureEntry> entries,
                                const float* compact, int write_delay_ms) {
  require(type != IndexType::Exact, "approximate index: type exact is TextureIndex's");
  require(!entries.empty(), "index '" + path + "': no entries to write");
  const int d = projection.dim();
  const size_t n = entries.size();
  std::error_code ec;
  fs::create_directories(dir_of(path), ec);
  require(!ec,
          "index '" + path + "': cannot create directory '" + dir_of(path) + "': " + ec.message());
  Manifest m;
  m.settings = settings;
  m.settings.half = false;
  m.segments = projection.segments();
  m.type = type;
  m.params = params;
  const std::string id = random_id();
  // Training sample: an evenly spaced subset.
  std::unique_ptr<faiss::Index> trained;
  if (type == IndexType::IvfPq) {
    const size_t ns = std::min(n, size_t(std::max(1, params.sample)));
    std::vector<float> sample(ns * size_t(d));
    for (size_t i = 0; i < ns; ++i)
      std::memcpy(sample.data() + i * d, compact + (i * n / ns) * d, size_t(d) * 4);
    trained = trained_ivfpq(params, d, sample.data(), ns);
  }
  m.base_file = "base-" + id + ".h5";
  write_base(dir_of(path) + "/" + m.base_file, type, projection, trained.get(), m.base_fnv);
  auto index = segment_index(type, params, d, trained.get(), compact, n);
  m.seg_files.push_back("seg-" + id + "-000000.h5");
  m.seg_rows.push_back(int64_t(n));
  m.seg_fnv.push_back(
      write_segment(dir_of(path) + "/" + m.seg_files[0], entries, *index, d, write_delay_ms));
  pause_ms(write_delay_ms);
  write_manifest(path, m);  // the commit
}

void ApproxTextureIndex::append(const std::string& path, std::vector<TextureEntry> entries,
                                const float* compact, int write_delay_ms) {
  if (entries.empty()) return;
  Manifest m = read_manifest(path);
  // The base (projection, trained IVF-PQ) and the entry lists; the committed FAISS blobs are not
  // read.
  ApproxTextureIndex old = open_impl(path, false);
  const int d = old.dim();
  auto index =
      segment_index(m.type, m.params, d, old.impl_->trained.get(), compact, entries.size());
  const std::string& base = m.base_file;  // "base-<id>.h5": segments carry the build's id
  const std::string id = base.substr(5, base.size() - 8);
  char num[16];
  std::snprintf(num, sizeof num, "%06zu", m.seg_files.size());
  const std::string name = "seg-" + id + "-" + num + "-" + random_id().substr(0, 8) + ".h5";
  const std::string fnv =
      write_segment(dir_of(path) + "/" + name, entries, *index, d, write_delay_ms);
  pause_ms(write_delay_ms);
  m.seg_files.push_back(name);
  m.seg_rows.push_back(int64_t(entries.size()));
  m.seg_fnv.push_back(fnv);
  write_manifest(path, m);  // the commit
}

ApproxTextureIndex ApproxTextureIndex::open(const std::string& path) {
  return open_impl(path, true);
}

ApproxTextureIndex ApproxTextureIndex::open_impl(const std::string& path, bool with_faiss) {
  ApproxTextureIndex idx;
  Impl& I = *idx.impl_;
  I.path = path;
  I.m = read_manifest(path);
  const Manifest& m = I.m;
  std::error_code ec;
  I.bytes = size_t(fs::file_size(path, ec));
  const std::string dir = dir_of(path);
  {
    const std::string bp = dir + "/" + m.base_file;
    h5::File f = h5::File::open(bp, ctx(bp));
    if (!f.has_attr("/", "format") ||
        f.read_attr_string("/", "format") != "preimage-texture-index-base")
      f.fail("not a texture index base file");
    const auto cs = f.read_attr_int64s("/", "compact_segments");
    const int L = int(m.segments.size()) - 1;
    if (int(cs.size()) != L + 1 || cs[0] != 0)
      f.fail("attribute 'compact_segments' does not match the index's " + std::to_string(L) +
             " layers");
    CompactProjection& p = I.projection;
    p.segments_ = m.segments;
    p.compact_segments_.assign(1, 0);
    for (int l = 0; l < L; ++l) {
      if (cs[l + 1] <= cs[l] || cs[l + 1] > 4096)
        f.fail("attribute 'compact_segments' is not increasing within 1..4096");
      p.compact_segments_.push_back(int(cs[l + 1]));
      const int64_t D = m.segments[l + 1] - m.segments[l], d = cs[l + 1] - cs[l];
      const std::string mn = "/projection/mean_" + std::to_string(l);
      const std::string bn = "/projection/basis_" + std::to_string(l);
      f.check_dataset(mn, h5::Kind::Float, {D}, "float32 (" + std::to_string(D) + ")");
      f.check_dataset(bn, h5::Kind::Float, {d, D}, "float32 (d, D)");
      p.mean_.push_back(f.read_vector<float>(mn));
      p.basis_.push_back(f.read_vector<float>(bn));
    }
    const auto blob = read_blob(f, "/faiss_trained");
    Fnv h;
    for (size_t l = 0; l < p.mean_.size(); ++l) {
      h.add(p.mean_[l].data(), p.mean_[l].size() * 4);
      h.add(p.basis_[l].data(), p.basis_[l].size() * 4);
    }
    h.add(blob.data(), blob.size());
    if (hex64(h.h) != m.base_fnv)
      f.fail("checksum " + hex64(h.h) + " does not match the manifest's " + m.base_fnv +
             " (corrupt file)");
    if (m.type == IndexType::IvfPq) I.trained = deserialize(blob, ctx(bp));
    I.bytes += size_t(fs::file_size(bp, ec));
  }
  std::map<std::string, std::pair<size_t, size_t>> latest;  // path → (segment, row)
  for (size_t s = 0; s < m.seg_files.size(); ++s) {
    const std::string sp = dir + "/" + m.seg_files[s];
    h5::File f = h5::File::open(sp, ctx(sp));
    Impl::Segment seg;
    const auto paths = f.read_strings("/paths");
    const int64_t N = int64_t(paths.size());
    if (N != m.seg_rows[s])
      f.fail("holds " + std::to_string(N) + " entries, the manifest says " +
             std::to_string(m.seg_rows[s]));
    f.check_dataset("/image_size", h5::Kind::Integer, {N, 2}, "int64 (N, 2)");
    const auto sizes = f.read_vector<int64_t>("/image_size");
    const auto shas = f.read_strings("/image_sha256");
    const auto sums = f.read_strings("/checksum");
    if (int64_t(shas.size()) != N || int64_t(sums.size()) != N)
      f.fail("datasets '/paths', '/image_sha256' and '/checksum' have different lengths");
    if (with_faiss) {
      const auto blob = read_blob(f, "/faiss");
      if (fnv_hex(blob) != m.seg_fnv[s])
        f.fail("FAISS index checksum " + fnv_hex(blob) + " does not match the manifest's " +
               m.seg_fnv[s] + " (corrupt file)");
      seg.index = deserialize(blob, ctx(sp));
      if (seg.index->d != I.projection.dim() || seg.index->ntotal != N)
        f.fail("FAISS index holds " + std::to_string(seg.index->ntotal) + " vectors of " +
               std::to_string(seg.index->d) + " values, expected " + std::to_string(N) + " of " +
               std::to_string(I.projection.dim()));
    }
    seg.entries.resize(size_t(N));
    for (int64_t i = 0; i < N; ++i) {
      TextureEntry& e = seg.entries[size_t(i)];
      e.path = paths[size_t(i)];
      e.height = int(sizes[size_t(2 * i)]);
      e.width = int(sizes[size_t(2 * i + 1)]);
      e.image_sha256 = shas[size_t(i)];
      e.checksum = sums[size_t(i)];
      latest[e.path] = {s, size_t(i)};
    }
    seg.live.assign(size_t(N), -1);
    I.bytes += size_t(fs::file_size(sp, ec));
    I.segs.push_back(std::move(seg));
  }
  for (size_t s = 0; s < I.segs.size(); ++s) {
    auto& seg = I.segs[s];
    for (size_t i = 0; i < seg.entries.size(); ++i) {
      const auto& w = latest[seg.entries[i].path];
      if (w.first == s && w.second == i) {
        seg.live[i] = int64_t(I.live.size());
        I.live.push_back(seg.entries[i]);
      } else {
        ++seg.dead;
      }
    }
  }
  return idx;
}

std::vector<std::vector<SearchHit>> ApproxTextureIndex::search(const float* q, int nq,
                                                               int k) const {
  const Impl& I = *impl_;
  const int d = dim();
  const auto& cs = I.projection.compact_segments();
  const ApproxIndexParams& p = I.m.params;
  std::vector<std::vector<SearchHit>> hits(size_t(std::max(nq, 0)));
  if (nq <= 0 || k <= 0 || I.live.empty()) return hits;
  // A few queries run on this thread alone: FAISS opens a parallel region per search even for
  // one query, and on a loaded machine its barrier waits for a descheduled thread (measured: a
  // 0.2 ms HNSW query took 47 ms with two threads while other jobs ran).
  struct Threads {
    int saved = omp_get_max_threads();
    explicit Threads(bool one) {
      if (one) omp_set_num_threads(1);
    }
    ~Threads() { omp_set_num_threads(saved); }
  } threads(nq < 4 * omp_get_max_threads());
  std::vector<std::vector<SearchHit>> cand(static_cast<size_t>(nq));
  std::vector<float> v(static_cast<size_t>(d));
  for (const auto& seg : I.segs) {
    const idx_t ns = seg.index->ntotal;
    const idx_t kk = std::min<idx_t>(ns, idx_t(k) * p.rerank + seg.dead);
    if (kk <= 0) continue;
    std::vector<float> dist(size_t(nq) * kk);
    std::vector<idx_t> lab(size_t(nq) * kk);
    if (I.m.type == IndexType::Hnsw) {
      faiss::SearchParametersHNSW sp;
      sp.efSearch = std::max<int>(p.ef_search, int(kk));
      seg.index->search(nq, q, kk, dist.data(), lab.data(), &sp);
    } else {
      auto* r = static_cast<faiss::IndexRefine*>(seg.index.get());
      auto* ivf = static_cast<faiss::IndexIVFPQ*>(r->base_index);
      ivf->nprobe = size_t(std::min<int>(p.nprobe, int(ivf->nlist)));
      r->search(nq, q, kk, dist.data(), lab.data());
    }
    for (int i = 0; i < nq; ++i)
      for (idx_t j = 0; j < kk; ++j) {
        const idx_t row = lab[size_t(i) * kk + j];
        if (row < 0 || seg.live[size_t(row)] < 0) continue;
        seg.index->reconstruct(row, v.data());
        cand[size_t(i)].push_back(
            {size_t(seg.live[size_t(row)]), compact_distance(q + size_t(i) * d, v.data(), cs)});
      }
  }
  for (int i = 0; i < nq; ++i) {
    auto& c = cand[size_t(i)];
    const size_t kk = std::min(c.size(), size_t(k));
    std::partial_sort(
        c.begin(), c.begin() + kk, c.end(), [](const SearchHit& a, const SearchHit& b) {
          return a.distance < b.distance || (a.distance == b.distance && a.entry < b.entry);
        });
    c.resize(kk);
    hits[size_t(i)] = std::move(c);
  }
  return hits;
}

std::vector<std::string> ApproxTextureIndex::verify() const {
  const Impl& I = *impl_;
  std::vector<std::string> problems;
  const int d = dim();
  const auto& cs = I.projection.compact_segments();
  const int L = int(cs.size()) - 1;
  std::vector<float> v(static_cast<size_t>(d));
  for (size_t s = 0; s < I.segs.size(); ++s) {
    const auto& seg = I.segs[s];
    for (size_t i = 0; i < seg.entries.size(); ++i) {
      const TextureEntry& e = seg.entries[i];
      seg.index->reconstruct(int64_t(i), v.data());
      const std::string sum =
          entry_checksum(e, reinterpret_cast<const unsigned char*>(v.data()), v.size() * 4);
      const std::string where =
          "segment " + I.m.seg_files[s] + " entry " + std::to_string(i) + " ('" + e.path + "')";
      if (sum != e.checksum) {
        problems.push_back(where + ": checksum " + e.checksum + " does not match its contents (" +
                           sum + ")");
        continue;
      }
      for (int l = 0; l < L; ++l) {
        double ss = 0;
        for (int k = cs[l]; k < cs[l + 1]; ++k) ss += double(v[size_t(k)]) * v[size_t(k)];
        const double norm = std::sqrt(ss * L);
        if (!(std::fabs(norm - 1.0) <= 2e-2))
          problems.push_back(where + ": layer " + I.m.settings.layers[size_t(l)] +
                             " compact vector has norm " + std::to_string(norm) + ", expected 1");
      }
    }
  }
  return problems;
}

// ---- build / add from images
// ---------------------------------------------------------------------

namespace {

std::vector<float> floats_of(const std::vector<NewEntry>& fresh, int D) {
  std::vector<float> v(fresh.size() * size_t(D));
  for (size_t i = 0; i < fresh.size(); ++i)
    std::memcpy(v.data() + i * D, fresh[i].bytes.data(), size_t(D) * 4);
  return v;
}

}  // namespace

IndexUpdateReport build_approx_texture_index(const std::vector<std::string>& images,
                                             const TextureIndexSettings& settings, IndexType type,
                                             const ApproxIndexParams& params,
                                             const std::string& out, Device device,
                                             const IndexUpdateOptions& options) {
  require(type != IndexType::Exact, "build_approx_texture_index: use build_texture_index");
  IndexUpdateReport report;
  TextureIndexSettings s = settings;
  s.half = false;  // the full vectors are only an intermediate here
  TextureFeatures feat(s, device);
  WriterLock lock(out);
  remove_stale_temporaries(out);
  {
    std::unique_ptr<Manifest> old;
    try {
      old = std::make_unique<Manifest>(read_manifest(out));
    } catch (const Error&) {
    }
    remove_unreferenced(out, old.get());
  }
  std::vector<NewEntry> fresh = extract(feat, hashed_images(images, report), options, report);
  require(!fresh.empty(), "no readable image among the " + std::to_string(images.size()) +
                              " given; index '" + out + "' not written");
  const int D = feat.dim();
  const std::vector<float> full = floats_of(fresh, D);
  // The projection learns from an evenly spaced sample.
  const size_t ns = std::min(fresh.size(), size_t(std::max(1, params.sample)));
  std::vector<float> sample(ns * size_t(D));
  for (size_t i = 0; i < ns; ++i)
    std::memcpy(sample.data() + i * D, full.data() + (i * fresh.size() / ns) * D, size_t(D) * 4);
  const CompactProjection proj =
      CompactProjection::fit(sample.data(), ns, feat.segments(), params.dim, params.seed);
  std::vector<float> compact(fresh.size() * size_t(proj.dim()));
  proj.apply(full.data(), fresh.size(), compact.data());
  std::vector<TextureEntry> entries;
  for (auto& n : fresh) entries.push_back(n.entry);
  ApproxTextureIndex::create(out, type, feat.settings(), proj, params, entries, compact.data(),
                             options.write_delay_ms);
  report.added = entries.size();
  report.total = entries.size();
  return report;
}

IndexUpdateReport add_to_approx_texture_index(const std::string& index,
                                              const std::vector<std::string>& images, Device device,
                                              const IndexUpdateOptions& options) {
  IndexUpdateReport report;
  WriterLock lock(index);
  remove_stale_temporaries(index);
  // Entry lists only: an add reads O(entries) of metadata, never the FAISS blobs of the
  // committed segments, and writes O(new entries).
  ApproxTextureIndex old = ApproxTextureIndex::open_entries(index);
  {
    Manifest m = read_manifest(index);
    remove_unreferenced(index, &m);
  }
  TextureIndexSettings s = old.settings();
  TextureFeatures feat(s, device);
  require(feat.settings().weights_identity == s.weights_identity,
          "index '" + index + "': weights '" + s.weights + "' are now " +
              feat.settings().weights_identity + " but the index was built with " +
              s.weights_identity + "; rebuild the index");
  require(feat.segments() == old.segments(),
          "index '" + index + "': the network's layer sizes differ from the index's");
  std::map<std::string, size_t> where;
  for (size_t i = 0; i < old.entries().size(); ++i) where[old.entries()[i].path] = i;
  std::vector<std::pair<std::string, std::string>> to_index;
  for (auto& [p, sha] : hashed_images(images, report)) {
    auto it = where.find(p);
    if (it != where.end() && old.entries()[it->second].image_sha256 == sha)
      ++report.unchanged;
    else
      to_index.emplace_back(std::move(p), std::move(sha));
  }
  std::vector<NewEntry> fresh = extract(feat, to_index, options, report);
  std::vector<TextureEntry> entries;
  for (auto& n : fresh) {
    if (where.count(n.entry.path))
      ++report.replaced;
    else
      ++report.added;
    entries.push_back(n.entry);
  }
  if (!fresh.empty()) {
    const std::vector<float> full = floats_of(fresh, feat.dim());
    std::vector<float> compact(fresh.size() * size_t(old.dim()));
    old.projection().apply(full.data(), fresh.size(), compact.data());
    ApproxTextureIndex::append(index, entries, compact.data(), options.write_delay_ms);
  }
  report.total = old.size() + report.added;
  return report;
}

}  // namespace preimage
