// Texture similarity index (preimage/texture_index.h): Gram-vector extraction, the HDF5 file
// (read whole, written whole under a temporary name and renamed), checksums, exact search.
#include "preimage/texture_index.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "engine/core/backend.h"
#include "engine/core/strings.h"
#include "engine/features/index/index_internal.h"
#include "engine/io/fnv_hash.h"
#include "engine/io/h5_util.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"

namespace preimage {
namespace index_internal {

namespace fs = std::filesystem;

std::string entry_checksum(const TextureEntry& e, const unsigned char* bytes, size_t n) {
  Fnv f;
  f.add(e.path);
  const int64_t hw[2] = {e.height, e.width};
  f.add(hw, sizeof hw);
  f.add(e.image_sha256);
  f.add(bytes, n);
  return hex64(f.h);
}

std::string absolute_path(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

WriterLock::WriterLock(const std::string& index) {
  const std::string p = index + ".lock";
  fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  require(fd_ >= 0,
          "index '" + index + "': cannot create lock file '" + p + "': " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t got = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      std::string holder = got > 0 ? std::string(buf, size_t(got)) : std::string();
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      throw Error("index '" + index + "' is being written by another process" +
                  (holder.empty() ? std::string() : " (pid " + holder + ")") + ": lock '" + p +
                  "' is held; not writing (run one build/add at a time, retry when it finishes)");
    }
    throw Error("index '" + index + "': cannot lock '" + p + "': " + std::strerror(err));
  }
  // The holder's pid, for the message a refused writer prints.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // Only the message of a refused writer depends on it.
  }
}

WriterLock::~WriterLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

// Called under the index lock: every writer holds it while its temporary file exists, so any
// other one is stale.
void remove_stale_temporaries(const std::string& index) {
  std::error_code ec;
  const fs::path p(index);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string prefix = p.filename().string() + ".tmp.";
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name != prefix + std::to_string(::getpid())) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

}  // namespace index_internal

namespace {

using namespace index_internal;
namespace fs = std::filesystem;

constexpr const char* kFormat = "preimage-texture-index";
constexpr int64_t kFormatVersion = 1;

// IEEE binary16, round to nearest even.
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow → inf
  if (abs < 0x38800000u) {                                  // subnormal or zero in half
    if (abs < 0x33000000u) return uint16_t(sign);
    const uint32_t mant = (abs & 0x007fffffu) | 0x00800000u;
    const int shift = 126 - int(abs >> 23);  // 14..24
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    uint32_t r = q + (rem > half || (rem == half && (q & 1u)));
    return uint16_t(sign | r);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 → 15
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      x = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// HDF5's IEEE half (the type h5py and numpy read as float16).
h5::Id half_type() {
  h5::Id t(H5Tcopy(H5T_IEEE_F32LE));
  H5Tset_fields(t.get(), 15, 10, 5, 0, 10);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), 15);
  return t;
}

void to_stored(const float* v, size_t n, bool half, unsigned char* out) {
  if (!half) {
    std::memcpy(out, v, n * 4);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_half(v[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

void from_stored(const unsigned char* in, size_t n, bool half, float* out) {
  if (!half) {
    std::memcpy(out, in, n * 4);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = half_to_float(h);
  }
}

std::string context_of(const std::string& path) {
  return "index file '" + path + "'";
}

}  // namespace

// ---- vectors ---------------------------------------------------------------------------------

size_t gram_vector_length(int channels) {
  return size_t(channels) * (channels + 1) / 2;
}

double gram_to_unit_vector(const float* g, int c, float* out) {
  double ss = 0;
  for (size_t i = 0; i < size_t(c) * c; ++i) ss += double(g[i]) * g[i];
  const double norm = std::sqrt(ss);
  const size_t len = gram_vector_length(c);
  if (!(norm > 0) || !std::isfinite(norm)) {
    std::fill_n(out, len, 0.f);
    return std::isfinite(norm) ? 0.0 : norm;
  }
  const double inv = 1.0 / norm, off = std::sqrt(2.0) / norm;
  size_t k = 0;
  for (int i = 0; i < c; ++i) {
    out[k++] = float(g[size_t(i) * c + i] * inv);
    for (int j = i + 1; j < c; ++j) {
      // The symmetric pair's mean, so a rounding asymmetry of g cannot leak in.
      const double v = 0.5 * (double(g[size_t(i) * c + j]) + g[size_t(j) * c + i]);
      out[k++] = float(v * off);
    }
  }
  return norm;
}

// ---- feature extraction ----------------------------------------------------------------------

struct TextureFeatures::Impl {
  TextureIndexSettings settings;
  Device device;
  std::unique_ptr<Network> net;
  std::vector<int> segments{0};
};

TextureFeatures::TextureFeatures(TextureIndexSettings settings, Device device)
    : impl_(std::make_unique<Impl>()) {
  require(!settings.layers.empty(), "--layers: at least one layer is needed");
  require(int(settings.layers.size()) <= 40,
          "--layers: at most 40 layers (got " + std::to_string(settings.layers.size()) + ")");
  require(settings.size >= 16,
          "--size: expected at least 16, got " + std::to_string(settings.size));
  require(settings.crop > 0.f && settings.crop <= 1.f,
          "--crop: expected a fraction in (0, 1], got " + std::to_string(settings.crop));
  Weights w = load_weights(settings.weights, parse_arch(settings.arch));
  settings.weights_identity = w.identity;
  settings.arch = arch_name(w.arch);
  impl_->device = device;
  impl_->net = std::make_unique<Network>(std::move(w), device);
  impl_->net->check_taps(settings.layers);
  settings.channels.clear();
  const int probe = std::max(settings.size, 64);
  for (const auto& l : settings.layers) {
    const Shape s = impl_->net->tap_shape(l, Shape{1, 3, probe, probe});
    settings.channels.push_back(s.c);
    impl_->segments.push_back(impl_->segments.back() + int(gram_vector_length(s.c)));
  }
  impl_->settings = std::move(settings);
}

TextureFeatures::~TextureFeatures() = default;
TextureFeatures::TextureFeatures(TextureFeatures&&) noexcept = default;
TextureFeatures& TextureFeatures::operator=(TextureFeatures&&) noexcept = default;

const TextureIndexSettings& TextureFeatures::settings() const {
  return impl_->settings;
}
Device TextureFeatures::device() const {
  return impl_->device;
}
int TextureFeatures::dim() const {
  return impl_->segments.back();
}
const std::vector<int>& TextureFeatures::segments() const {
  return impl_->segments;
}

Tensor TextureFeatures::load(const std::string& path, float crop) const {
  return preprocess(load_image(path), crop);
}

Tensor TextureFeatures::preprocess(Tensor img, float crop) const {
  if (crop < 0) crop = impl_->settings.crop;
  require(crop > 0.f && crop <= 1.f,
          "--crop: expected a fraction in (0, 1], got " + std::to_string(crop));
  require(img.shape().n == 1 && img.shape().c == 3,
          "texture features: expected a (1,3,H,W) image, got " + img.shape().str());
  if (img.device() != Device::CPU) img = img.to(Device::CPU);
  const int h = img.shape().h, w = img.shape().w;
  if (crop < 1.f) {
    const int ch = std::max(1, int(std::lround(h * double(crop))));
    const int cw = std::max(1, int(std::lround(w * double(crop))));
    const int y0 = (h - ch) / 2, x0 = (w - cw) / 2;
    std::vector<float> src = img.to_vector(), dst(size_t(3) * ch * cw);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < ch; ++y)
        std::memcpy(&dst[(size_t(c) * ch + y) * cw], &src[(size_t(c) * h + y0 + y) * w + x0],
                    size_t(cw) * sizeof(float));
    img = Tensor::from_vector({1, 3, ch, cw}, dst);
  }
  const int sh = img.shape().h, sw = img.shape().w, size = impl_->settings.size;
  int th, tw;
  if (sh >= sw) {
    th = size;
    tw = std::max(1, int(std::lround(double(sw) * size / sh)));
  } else {
    tw = size;
    th = std::max(1, int(std::lround(double(sh) * size / sw)));
  }
  if (th != sh || tw != sw) img = resize(img.view(), th, tw);
  return img;
}

void TextureFeatures::compute(const std::vector<const Tensor*>& images, float* out) {
  if (images.empty()) return;
  const Shape one = images[0]->shape();
  require(one.n == 1 && one.c == 3,
          "texture features: expected (1,3,H,W) images, got " + one.str());
  const int n = int(images.size());
  Tensor batch({n, 3, one.h, one.w}, Device::CPU);
  for (int i = 0; i < n; ++i) {
    check_shape(images[i]->shape(), one, "texture features: image " + std::to_string(i));
    std::memcpy(batch.data() + size_t(i) * one.numel(), images[i]->data(),
                one.numel() * sizeof(float));
  }
  Tensor x = batch.to(impl_->device);
  Network& net = *impl_->net;
  const auto& layers = impl_->settings.layers;
  net.forward(x.view(), layers);
  const int D = dim();
  for (size_t l = 0; l < layers.size(); ++l) {
    const Tensor& act = net.tap(layers[l]);
    const int c = act.shape().c;
    for (int i = 0; i < n; ++i) {
      std::vector<float> g = gram_matrix(act.batch(i)).to_vector();
      const double norm =
          gram_to_unit_vector(g.data(), c, out + size_t(i) * D + impl_->segments[l]);
      require(norm > 0 && std::isfinite(norm), "layer " + layers[l] + ": the Gram matrix is " +
                                                   (std::isfinite(norm) ? "zero" : "not finite") +
                                                   " (a blank image?)");
    }
  }
}

namespace index_internal {

void read_settings(const h5::File& f, TextureIndexSettings& s, std::vector<int>& segments) {
  segments.assign(1, 0);
  s.channels.clear();
  s.layers = f.read_attr_strings("/", "layers");
  for (int64_t c : f.read_attr_int64s("/", "channels"))
    s.channels.push_back(int(std::clamp<int64_t>(c, -1, 1 << 20)));  // range checked below
  s.weights = f.read_attr_string("/", "weights");
  s.weights_identity = f.read_attr_string("/", "weights_identity");
  s.arch = f.read_attr_string("/", "arch");
  const auto size = f.read_attr_int64s("/", "size");
  const auto crop = f.read_attr_doubles("/", "crop");
  if (size.size() != 1 || crop.size() != 1)
    f.fail("attributes 'size' and 'crop' must hold one value each");
  s.size = int(size[0]);
  s.crop = float(crop[0]);
  if (s.layers.empty() || s.layers.size() != s.channels.size())
    f.fail("attributes 'layers' and 'channels' disagree (" + std::to_string(s.layers.size()) +
           " vs " + std::to_string(s.channels.size()) + ")");
  for (int c : s.channels) {
    // VGG layers have at most 512 channels; the cap keeps D = Σ C(C+1)/2 far from int overflow.
    if (c <= 0 || c > 4096)
      f.fail("attribute 'channels' holds " + std::to_string(c) + ", expected a count in 1..4096");
    if (segments.back() > (1 << 30))
      f.fail("attributes 'layers' and 'channels' describe vectors too long (corrupt file)");
    segments.push_back(segments.back() + int(gram_vector_length(c)));
  }
}

void write_settings(h5::File& f, const TextureIndexSettings& s, const std::vector<int>& segments) {
  f.write_attr_string("/", "format", kFormat);
  f.write_attr_strings("/", "layers", s.layers);
  f.write_attr_int64s("/", "channels", std::vector<int64_t>(s.channels.begin(), s.channels.end()));
  f.write_attr_int64s("/", "segments", std::vector<int64_t>(segments.begin(), segments.end()));
  f.write_attr_string("/", "weights", s.weights);
  f.write_attr_string("/", "weights_identity", s.weights_identity);
  f.write_attr_string("/", "arch", s.arch);
  f.write_attr_int64s("/", "size", {s.size});
  f.write_attr_doubles("/", "crop", {double(s.crop)});
}

}  // namespace index_internal

// ---- the file -----------------------------------------------------------------------------------

TextureIndex TextureIndex::open(const std::string& path) {
  TextureIndex idx;
  idx.path_ = path;
  h5::File f = h5::File::open(path, context_of(path));
  if (!f.has_attr("/", "format") || f.read_attr_string("/", "format") != kFormat)
    f.fail("not a preimage texture index (attribute 'format' is not '" + std::string(kFormat) +
           "')");
  const auto version = f.read_attr_int64s("/", "format_version");
  if (version.size() == 1 && version[0] == 2 && f.has_attr("/", "index_type"))
    f.fail("is an approximate (" + f.read_attr_string("/", "index_type") +
           ") texture index; open it with preimage::ApproxTextureIndex (preimage/approx_index.h)");
  if (version.size() != 1 || version[0] != kFormatVersion)
    f.fail("format_version " + (version.empty() ? std::string("?") : std::to_string(version[0])) +
           " is not supported (expected " + std::to_string(kFormatVersion) + ")");
  TextureIndexSettings& s = idx.settings_;
  read_settings(f, s, idx.segments_);
  const std::string dtype = f.read_attr_string("/", "dtype");
  if (dtype != "float32" && dtype != "float16")
    f.fail("attribute 'dtype' is '" + dtype + "', expected float32 or float16");
  s.half = dtype == "float16";
  const int64_t D = idx.segments_.back();

  const auto paths = f.read_strings("/paths");
  const int64_t N = int64_t(paths.size());
  f.check_dataset("/vectors", h5::Kind::Float, {N, D}, "float (N, " + std::to_string(D) + ")");
  f.require_stored("/vectors");
  f.check_dataset("/image_size", h5::Kind::Integer, {N, 2}, "int64 (N, 2)");
  const auto sizes = f.read_vector<int64_t>("/image_size");
  const auto shas = f.read_strings("/image_sha256");
  const auto sums = f.read_strings("/checksum");
  if (int64_t(shas.size()) != N || int64_t(sums.size()) != N)
    f.fail("datasets '/paths', '/image_sha256' and '/checksum' have different lengths (" +
           std::to_string(N) + ", " + std::to_string(shas.size()) + ", " +
           std::to_string(sums.size()) + ")");
  idx.entries_.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) {
    TextureEntry& e = idx.entries_[size_t(i)];
    e.path = paths[size_t(i)];
    e.height = int(sizes[size_t(2 * i)]);
    e.width = int(sizes[size_t(2 * i + 1)]);
    e.image_sha256 = shas[size_t(i)];
    e.checksum = sums[size_t(i)];
  }

  // The vectors' bytes exactly as stored (the checksums cover them), then float32.
  {
    h5::Quiet q;
    h5::Id ds(H5Dopen2(f.id(), "/vectors", H5P_DEFAULT));
    if (!ds.valid()) f.fail("cannot open dataset '/vectors'");
    h5::Id ft(H5Dget_type(ds.get()));
    const size_t esize = H5Tget_size(ft.get());
    if (esize != (s.half ? 2u : 4u))
      f.fail("dataset '/vectors' has " + std::to_string(8 * esize) +
             "-bit floats, but attribute "
             "'dtype' says " +
             dtype);
    h5::Id mem = s.half ? half_type() : h5::Id(H5Tcopy(H5T_NATIVE_FLOAT));
    idx.stored_.resize(size_t(N) * size_t(D) * esize);
    if (N > 0 &&
        H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, idx.stored_.data()) < 0) {
      const std::string why = h5::last_error();
      f.fail("cannot read dataset '/vectors'" + (why.empty() ? "" : " (" + why + ")"));
    }
  }
  idx.vectors_.resize(size_t(N) * size_t(D));
  from_stored(idx.stored_.data(), idx.vectors_.size(), s.half, idx.vectors_.data());
  return idx;
}

std::vector<std::string> TextureIndex::verify() const {
  std::vector<std::string> problems;
  const size_t D = size_t(dim()), esize = settings_.half ? 2 : 4;
  const double tol = settings_.half ? 2e-2 : 1e-3;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const TextureEntry& e = entries_[i];
    const std::string sum = entry_checksum(e, stored_.data() + i * D * esize, D * esize);
    if (sum != e.checksum) {
      problems.push_back("entry " + std::to_string(i) + " ('" + e.path + "'): checksum " +
                         e.checksum + " does not match its contents (" + sum + ")");
      continue;
    }
    for (size_t l = 0; l < settings_.layers.size(); ++l) {
      double ss = 0;
      for (int k = segments_[l]; k < segments_[l + 1]; ++k) {
        const double v = vectors_[i * D + size_t(k)];
        ss += v * v;
      }
      if (!(std::fabs(std::sqrt(ss) - 1.0) <= tol))
        problems.push_back("entry " + std::to_string(i) + " ('" + e.path + "'): layer " +
                           settings_.layers[l] + " vector has norm " +
                           std::to_string(std::sqrt(ss)) + ", expected 1");
    }
  }
  return problems;
}

void TextureIndex::check_layers(const std::vector<std::string>& layers) const {
  if (layers != settings_.layers)
    throw Error("--layers " + join(layers) + " does not match index '" + path_ +
                "', which holds layers " + join(settings_.layers) +
                " (search uses the index's layers; rebuild the index for others)");
}

struct TextureIndexWriter {
  static const std::vector<unsigned char>& stored(const TextureIndex& i) { return i.stored_; }
  // Writes a complete index to `path` under a temporary name, then renames it.
  static void write(const std::string& path, const TextureIndexSettings& s,
                    const std::vector<int>& segments, const std::vector<TextureEntry>& entries,
                    const std::vector<unsigned char>& stored, int delay_ms) {
    const int64_t N = int64_t(entries.size()), D = segments.back();
    const size_t esize = s.half ? 2 : 4;
    require(stored.size() == size_t(N) * size_t(D) * esize,
            "texture index: internal size mismatch");
    auto pause = [&] {
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    };
    write_atomically(path, [&](const std::string& tmp) {
      h5::File f = h5::File::create(tmp, context_of(tmp));
      write_settings(f, s, segments);
      f.write_attr_int64s("/", "format_version", {kFormatVersion});
      f.write_attr_string("/", "dtype", s.half ? "float16" : "float32");
      f.write_attr_string("/", "distance",
                          "sum over layers of ||G1/||G1||_F - G2/||G2||_F||_F; vectors: upper "
                          "triangle row-major, off-diagonals times sqrt(2), unit norm per layer");
      {
        h5::Quiet q;
        const hsize_t dims[2] = {hsize_t(N), hsize_t(D)};
        h5::Id space(H5Screate_simple(2, dims, nullptr));
        h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
        const hsize_t rows = std::clamp<hsize_t>(hsize_t((1u << 20) / (size_t(D) * esize)), 1,
                                                 std::max<int64_t>(N, 1));
        const hsize_t chunk[2] = {rows, hsize_t(D)};
        H5Pset_chunk(dcpl.get(), 2, chunk);
        h5::Id type = s.half ? half_type() : h5::Id(H5Tcopy(H5T_IEEE_F32LE));
        h5::Id mem = s.half ? half_type() : h5::Id(H5Tcopy(H5T_NATIVE_FLOAT));
        h5::Id ds(H5Dcreate2(f.id(), "/vectors", type.get(), space.get(), H5P_DEFAULT, dcpl.get(),
                             H5P_DEFAULT));
        if (!ds.valid()) f.fail("cannot create dataset '/vectors'");
        if (N > 0 &&
            H5Dwrite(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, stored.data()) < 0) {
          const std::string why = h5::last_error();
          f.fail("cannot write dataset '/vectors'" + (why.empty() ? "" : " (" + why + ")"));
        }
      }
      pause();
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
      f.write(std::string("/image_size"), sizes.data(), {N, 2});
      f.write_strings("/image_sha256", shas);
      pause();
      f.write_strings("/checksum", sums);
      f.close();
      pause();
    });
  }
};

// ---- build / add -------------------------------------------------------------------------------

std::vector<std::string> image_files_under(const std::string& dir_or_file) {
  std::error_code ec;
  if (fs::is_regular_file(dir_or_file, ec)) return {dir_or_file};
  require(fs::is_directory(dir_or_file, ec), "'" + dir_or_file + "': no such file or directory");
  static const char* exts[] = {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".ppm", ".pgm"};
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(
           dir_or_file, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (std::find_if(std::begin(exts), std::end(exts), [&](const char* e) { return ext == e; }) !=
        std::end(exts))
      out.push_back(it->path().string());
  }
  require(!ec, "'" + dir_or_file + "': cannot list: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

namespace index_internal {

// Extracts vectors of `to_index` (absolute paths with their sha256), in batches of equal shapes;
// unreadable images go to report.skipped.
std::vector<NewEntry> extract(TextureFeatures& feat,
                              const std::vector<std::pair<std::string, std::string>>& to_index,
                              const IndexUpdateOptions& opt, IndexUpdateReport& report) {
  const auto t0 = std::chrono::steady_clock::now();
  const int D = feat.dim();
  const bool half = feat.settings().half;
  const size_t esize = half ? 2 : 4;
  std::vector<NewEntry> out;
  struct Pending {
    TextureEntry entry;
    Tensor image;
  };
  std::vector<Pending> batch;
  size_t done = 0;
  auto finish = [&](std::vector<Pending>& items) {
    std::vector<float> v(items.size() * size_t(D));
    auto emit = [&](Pending& p, const float* vec) {
      NewEntry ne{p.entry, std::vector<unsigned char>(size_t(D) * esize)};
      to_stored(vec, size_t(D), half, ne.bytes.data());
      ne.entry.checksum = entry_checksum(ne.entry, ne.bytes.data(), ne.bytes.size());
      out.push_back(std::move(ne));
    };
    try {
      std::vector<const Tensor*> imgs;
      for (auto& p : items) imgs.push_back(&p.image);
      feat.compute(imgs, v.data());
      for (size_t i = 0; i < items.size(); ++i) emit(items[i], v.data() + i * D);
    } catch (const Error&) {
      // One bad image fails its batch: redo one by one to find it.
      for (auto& p : items) {
        try {
          std::vector<const Tensor*> one{&p.image};
          feat.compute(one, v.data());
          emit(p, v.data());
        } catch (const Error& e) {
          report.skipped.emplace_back(p.entry.path, e.what());
        }
      }
    }
    for (auto& p : items) {
      ++done;
      if (opt.progress) opt.progress(done, to_index.size(), p.entry.path);
    }
    items.clear();
  };
  const int bsize = std::max(1, opt.batch);
  for (const auto& [path, sha] : to_index) {
    Pending p;
    p.entry.path = path;
    p.entry.image_sha256 = sha;
    try {
      Tensor full = load_image(path);
      p.entry.height = full.shape().h;
      p.entry.width = full.shape().w;
      p.image = feat.preprocess(std::move(full));
    } catch (const Error& e) {
      report.skipped.emplace_back(path, e.what());
      ++done;
      if (opt.progress) opt.progress(done, to_index.size(), path);
      continue;
    }
    if (!batch.empty() && (batch[0].image.shape() != p.image.shape() || int(batch.size()) >= bsize))
      finish(batch);
    batch.push_back(std::move(p));
  }
  if (!batch.empty()) finish(batch);
  report.extract_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

// Absolute, de-duplicated paths with the SHA-256 of each file; unreadable files go to
// report.skipped.
std::vector<std::pair<std::string, std::string>> hashed_images(
    const std::vector<std::string>& images, IndexUpdateReport& report) {
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> seen;
  for (const auto& img : images) {
    const std::string p = absolute_path(img);
    if (!seen.insert(p).second) continue;
    try {
      out.emplace_back(p, sha256_file(p));
    } catch (const std::exception& e) {
      report.skipped.emplace_back(p, e.what());
    }
  }
  return out;
}

}  // namespace index_internal

IndexUpdateReport build_texture_index(const std::vector<std::string>& images,
                                      const TextureIndexSettings& settings, const std::string& out,
                                      Device device, const IndexUpdateOptions& options) {
  IndexUpdateReport report;
  TextureFeatures feat(settings, device);
  WriterLock lock(out);
  remove_stale_temporaries(out);
  std::vector<NewEntry> fresh = extract(feat, hashed_images(images, report), options, report);
  require(!fresh.empty(), "no readable image among the " + std::to_string(images.size()) +
                              " given; index '" + out + "' not written");
  std::vector<TextureEntry> entries;
  std::vector<unsigned char> stored;
  for (auto& n : fresh) {
    entries.push_back(n.entry);
    stored.insert(stored.end(), n.bytes.begin(), n.bytes.end());
  }
  TextureIndexWriter::write(out, feat.settings(), feat.segments(), entries, stored,
                            options.write_delay_ms);
  report.added = entries.size();
  report.total = entries.size();
  return report;
}

IndexUpdateReport add_to_texture_index(const std::string& index,
                                       const std::vector<std::string>& images, Device device,
                                       const IndexUpdateOptions& options) {
  IndexUpdateReport report;
  WriterLock lock(index);
  remove_stale_temporaries(index);
  TextureIndex old = TextureIndex::open(index);
  const auto problems = old.verify();
  require(problems.empty(), "index '" + index + "' fails verification (" +
                                std::to_string(problems.size()) +
                                " problem(s), first: " + (problems.empty() ? "" : problems[0]) +
                                "); not adding to it (see: preimage index verify)");
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
  std::vector<TextureEntry> entries = old.entries();
  std::vector<unsigned char> stored = TextureIndexWriter::stored(old);
  const size_t row = size_t(old.dim()) * (s.half ? 2 : 4);
  for (auto& n : fresh) {
    auto it = where.find(n.entry.path);
    if (it != where.end()) {
      entries[it->second] = n.entry;
      std::memcpy(stored.data() + it->second * row, n.bytes.data(), row);
      ++report.replaced;
    } else {
      entries.push_back(n.entry);
      stored.insert(stored.end(), n.bytes.begin(), n.bytes.end());
      ++report.added;
    }
  }
  if (!fresh.empty())
    TextureIndexWriter::write(index, old.settings(), old.segments(), entries, stored,
                              options.write_delay_ms);
  report.total = entries.size();
  return report;
}

// ---- search ------------------------------------------------------------------------------------

namespace {

// dist (host, nq × ne) of host queries against entries already where `device` computes (the
// host for the CPU), in batches of 256 queries so that the device's distance block stays small.
void distances_on(Device device, const float* queries, int nq, const float* entries, int ne,
                  const std::vector<int>& segments, float* out) {
  const int dim = segments.back(), nseg = int(segments.size()) - 1;
  if (nq == 0 || ne == 0) return;
  Backend& b = backend(device);
  constexpr int kBatch = 256;
  for (int q0 = 0; q0 < nq; q0 += kBatch) {
    const int nb = std::min(kBatch, nq - q0);
    const float* q = queries + size_t(q0) * dim;
    float* o = out + size_t(q0) * ne;
    if (device == Device::CPU) {
      b.search_distances(q, entries, o, nb, ne, dim, segments.data(), nseg);
      continue;
    }
    Tensor qd = Tensor::from_host({nb, 1, 1, dim}, q, device);
    Tensor dd({nb, 1, 1, ne}, device);
    b.search_distances(qd.data(), entries, dd.data(), nb, ne, dim, segments.data(), nseg);
    b.copy_to_host(o, dd.data(), size_t(nb) * ne);
  }
}

}  // namespace

std::vector<float> texture_distances(Device device, const float* queries, int nq,
                                     const float* entries, int ne,
                                     const std::vector<int>& segments) {
  std::vector<float> out(size_t(nq) * ne);
  if (device == Device::CPU || nq == 0 || ne == 0) {
    distances_on(device, queries, nq, entries, ne, segments, out.data());
    return out;
  }
  Tensor e = Tensor::from_host({ne, 1, 1, segments.back()}, entries, device);
  distances_on(device, queries, nq, e.data(), ne, segments, out.data());
  return out;
}

struct TextureSearcher::Impl {
  const TextureIndex* index = nullptr;
  Device device = Device::CPU;
  Tensor entries;  // on the device (CUDA only; the CPU reads the index's own vectors)
};

TextureSearcher::TextureSearcher(const TextureIndex& index, Device device)
    : impl_(std::make_unique<Impl>()) {
  impl_->index = &index;
  impl_->device = device;
  backend(device);  // throws when unavailable
  if (device != Device::CPU && index.size() > 0)
    impl_->entries =
        Tensor::from_host({int(index.size()), 1, 1, index.dim()}, index.vectors().data(), device);
}

TextureSearcher::~TextureSearcher() = default;
TextureSearcher::TextureSearcher(TextureSearcher&&) noexcept = default;
TextureSearcher& TextureSearcher::operator=(TextureSearcher&&) noexcept = default;

std::vector<float> TextureSearcher::distances(const float* queries, int nq) {
  const TextureIndex& idx = *impl_->index;
  const bool cpu = impl_->device == Device::CPU;
  std::vector<float> out(size_t(nq) * idx.size());
  distances_on(impl_->device, queries, nq, cpu ? idx.vectors().data() : impl_->entries.data(),
               int(idx.size()), idx.segments(), out.data());
  return out;
}

std::vector<std::vector<SearchHit>> TextureSearcher::search(const float* queries, int nq, int k) {
  const std::vector<float> d = distances(queries, nq);
  const size_t ne = impl_->index->size();
  const size_t kk = std::min(ne, size_t(std::max(k, 0)));
  std::vector<std::vector<SearchHit>> hits(static_cast<size_t>(nq));
  std::vector<size_t> order(ne);
  for (int i = 0; i < nq; ++i) {
    const float* row = d.data() + size_t(i) * ne;
    std::iota(order.begin(), order.end(), size_t(0));
    std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](size_t a, size_t b) {
      return row[a] < row[b] || (row[a] == row[b] && a < b);
    });
    for (size_t r = 0; r < kk; ++r) hits[size_t(i)].push_back({order[r], row[order[r]]});
  }
  return hits;
}

}  // namespace preimage
