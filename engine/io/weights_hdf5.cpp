// VGG weights from HDF5: the canonical "preimage-vgg-1" layout (weights/README.md) and Keras'
// VGG16/VGG19 .h5 files (HWIO kernels, (IN,OUT) dense kernels with fc1's input in (H,W,C) order,
// Caffe preprocessing), plus "random:SEED", save_weights (canonical, atomic) and SHA-256 file
// identities. Every dataset's shape is checked against the architecture before it is read.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "engine/io/h5_util.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/network.h"
#include "preimage/weights.h"

namespace preimage {
namespace {

constexpr const char* kFormat = "preimage-vgg-1";
constexpr int kFcSide = 7;  // VGG's fc6 sees pool5 as 512 x 7 x 7

// What the architecture expects of one conv/linear layer.
struct Expected {
  std::string name;  // conv1_1 … conv5_4, fc6, fc7, fc8
  bool linear = false;
  int64_t out = 0;  // h5::any_dim for fc8 (any class count)
  int64_t in = 0;   // conv: input channels; linear: input features
  int k = 1;        // conv kernel size
};

std::vector<Expected> expected_layers(Arch arch) {
  std::vector<Expected> v;
  int64_t channels = 3, features = 0;
  for (const Layer& l : vgg_layers(arch)) {
    if (l.kind == LayerKind::Conv) {
      v.push_back({l.name, false, l.out_channels, channels, l.k});
      channels = l.out_channels;
      features = channels * kFcSide * kFcSide;
    } else if (l.kind == LayerKind::Linear) {
      v.push_back({l.name, true, l.out_channels, features, 1});
      features = l.out_channels;
    }
  }
  // The last linear layer (fc8) may have any number of classes.
  for (auto it = v.rbegin(); it != v.rend(); ++it)
    if (it->linear) {
      it->out = h5::any_dim;
      break;
    }
  return v;
}

std::string quoted_file(const std::string& path) {
  return "weights file '" + path + "'";
}

std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// ---- SHA-256 (FIPS 180-4) -------------------------------------------------------------------
// Portable compression function, plus the x86 SHA extensions (about 10x faster: a 550 MB Keras
// file hashes in well under a second) when the CPU has them and they agree with the portable
// code on a self-test buffer.

constexpr uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t kSha256Init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t rotr(uint32_t x, int r) {
  return (x >> r) | (x << (32 - r));
}

void sha256_blocks_portable(uint32_t* state, const unsigned char* b, size_t blocks) {
  for (; blocks > 0; --blocks, b += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(b[4 * i]) << 24 | uint32_t(b[4 * i + 1]) << 16 | uint32_t(b[4 * i + 2]) << 8 |
             uint32_t(b[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], bb = state[1], c = state[2], d = state[3], e = state[4], f = state[5],
             g = state[6], h = state[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 =
          h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[i] + w[i];
      const uint32_t t2 =
          (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = bb;
      bb = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += bb;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#if defined(__x86_64__)
// SHA-NI: four rounds per pair of sha256rnds2; message schedule with sha256msg1/msg2. The state
// is kept as (ABEF, CDGH) as the instructions expect.
__attribute__((target("sha,sse4.1,ssse3"))) void sha256_blocks_shani(uint32_t* state,
                                                                     const unsigned char* data,
                                                                     size_t blocks) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)), 0xB1);
  __m128i s1 =
      _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4)), 0x1B);
  __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);  // ABEF
  s1 = _mm_blend_epi16(s1, tmp, 0xF0);       // CDGH
  for (; blocks > 0; --blocks, data += 64) {
    const __m128i abef = s0, cdgh = s1;
    __m128i m[4];
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      if (g < 4)
        m[g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * g)),
                                bswap);
      __m128i msg = _mm_add_epi32(
          m[g % 4], _mm_loadu_si128(reinterpret_cast<const __m128i*>(kSha256K + 4 * g)));
      s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
      if (g >= 3 && g <= 14) {  // W[4(g+1) .. 4(g+1)+3]
        __m128i& next = m[(g + 1) % 4];
        next = _mm_add_epi32(next, _mm_alignr_epi8(m[g % 4], m[(g + 3) % 4], 4));
        next = _mm_sha256msg2_epu32(next, m[g % 4]);
      }
      msg = _mm_shuffle_epi32(msg, 0x0E);
      s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
      if (g >= 1 && g <= 12) m[(g + 3) % 4] = _mm_sha256msg1_epu32(m[(g + 3) % 4], m[g % 4]);
    }
    s0 = _mm_add_epi32(s0, abef);
    s1 = _mm_add_epi32(s1, cdgh);
  }
  tmp = _mm_shuffle_epi32(s0, 0x1B);    // FEBA
  s1 = _mm_shuffle_epi32(s1, 0xB1);     // DCHG
  s0 = _mm_blend_epi16(tmp, s1, 0xF0);  // DCBA
  s1 = _mm_alignr_epi8(s1, tmp, 8);     // HGFE
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), s0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), s1);
}

bool sha_ni_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 29))) return false;
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  if (!__get_cpuid(1, &a1, &b1, &c1, &d1) || !(c1 & (1u << 9)) || !(c1 & (1u << 19)))
    return false;  // SSSE3, SSE4.1
  unsigned char buf[64 * 5];
  for (size_t i = 0; i < sizeof buf; ++i) buf[i] = static_cast<unsigned char>(i * 131 + 7);
  uint32_t x[8], y[8];
  std::memcpy(x, kSha256Init, sizeof x);
  std::memcpy(y, kSha256Init, sizeof y);
  sha256_blocks_portable(x, buf, 5);
  sha256_blocks_shani(y, buf, 5);
  return std::memcmp(x, y, sizeof x) == 0;
}
#endif

void sha256_blocks(uint32_t* state, const unsigned char* data, size_t blocks) {
#if defined(__x86_64__)
  static const bool shani = sha_ni_usable();
  if (shani) return sha256_blocks_shani(state, data, blocks);
#endif
  sha256_blocks_portable(state, data, blocks);
}

class Sha256 {
 public:
  void update(const unsigned char* p, size_t n) {
    total_ += n;
    if (fill_ > 0) {
      const size_t take = std::min(n, size_t(64) - fill_);
      std::memcpy(block_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ < 64) return;
      sha256_blocks(h_, block_, 1);
      fill_ = 0;
    }
    sha256_blocks(h_, p, n / 64);
    p += n / 64 * 64;
    fill_ = n % 64;
    std::memcpy(block_, p, fill_);
  }
  std::string hex_digest() {
    const uint64_t bits = total_ * 8;
    unsigned char pad[72] = {0x80};
    const size_t pad_len = (fill_ < 56 ? 56 : 120) - fill_;
    for (int i = 0; i < 8; ++i)
      pad[pad_len + size_t(i)] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(pad, pad_len + 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t word : h_)
      for (int shift = 28; shift >= 0; shift -= 4) out += digits[(word >> shift) & 15];
    return out;
  }

 private:
  uint32_t h_[8] = {kSha256Init[0], kSha256Init[1], kSha256Init[2], kSha256Init[3],
                    kSha256Init[4], kSha256Init[5], kSha256Init[6], kSha256Init[7]};
  unsigned char block_[64] = {};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

// ---- shared helpers -------------------------------------------------------------------------

Tensor read_tensor(const h5::File& f, const std::string& path, Shape shape) {
  Tensor t(shape, Device::CPU);
  f.read(path, t.data(), t.numel());
  return t;
}

const float* host_data(const Tensor& t, std::vector<float>& scratch) {
  if (t.device() == Device::CPU) return t.data();
  scratch = t.to_vector();
  return scratch.data();
}

void check_preprocess(const h5::File& f, const Preprocess& p) {
  if (p.color_order != "RGB" && p.color_order != "BGR")
    f.fail("attribute 'color_order' is '" + p.color_order + "', expected \"RGB\" or \"BGR\"");
  if (!(p.value_range > 0) || !std::isfinite(p.value_range))
    f.fail("attribute 'value_range' is " + std::to_string(p.value_range) +
           ", expected a positive number (1 or 255)");
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(p.mean[c])) f.fail("attribute 'mean' is not finite");
    if (!(p.std[c] > 0) || !std::isfinite(p.std[c]))
      f.fail("attribute 'std' has " + std::to_string(p.std[c]) + ", expected positive values");
  }
}

std::vector<double> attr_floats(const h5::File& f, const std::string& name, size_t count) {
  if (!f.has_attr("/", name))
    f.fail("root attribute '" + name + "' missing (expected " + std::to_string(count) +
           (count == 1 ? " number)" : " numbers)"));
  auto v = f.read_attr_doubles("/", name);
  if (v.size() != count)
    f.fail("root attribute '" + name + "' has " + std::to_string(v.size()) + " values, expected " +
           std::to_string(count));
  return v;
}

std::string attr_string(const h5::File& f, const std::string& name, const std::string& expect) {
  if (!f.has_attr("/", name))
    f.fail("root attribute '" + name + "' missing (expected " + expect + ")");
  return f.read_attr_string("/", name);
}

// ---- canonical layout -----------------------------------------------------------------------

void read_canonical(const h5::File& f, Weights& w) {
  const std::string format = attr_string(f, "format", "\"" + std::string(kFormat) + "\"");
  if (format != kFormat)
    f.fail("root attribute 'format' is '" + format + "', expected '" + kFormat + "'");
  const std::string arch = attr_string(f, "arch", "\"vgg16\" or \"vgg19\"");
  if (arch != "vgg16" && arch != "vgg19")
    f.fail("root attribute 'arch' is '" + arch + "', expected \"vgg16\" or \"vgg19\"");
  w.arch = parse_arch(arch);

  Preprocess& p = w.preprocess;
  p.color_order = attr_string(f, "color_order", "\"RGB\" or \"BGR\"");
  p.value_range = float(attr_floats(f, "value_range", 1)[0]);
  const auto mean = attr_floats(f, "mean", 3), stdev = attr_floats(f, "std", 3);
  for (int c = 0; c < 3; ++c) {
    p.mean[c] = float(mean[size_t(c)]);
    p.std[c] = float(stdev[size_t(c)]);
  }
  check_preprocess(f, p);
  if (f.has_attr("/", "random_init")) {
    const auto r = f.read_attr_doubles("/", "random_init");
    w.random = !r.empty() && r[0] != 0;
  }

  std::string missing_fc;  // first absent fc layer: later ones must be absent too
  for (const Expected& e : expected_layers(w.arch)) {
    const std::string group = "/" + e.name;
    if (e.linear && !f.exists(group)) {
      if (missing_fc.empty()) missing_fc = e.name;
      continue;
    }
    if (e.linear && !missing_fc.empty())
      f.fail("group '" + group + "' present but '/" + missing_fc +
             "' missing (fc layers must be a prefix of fc6, fc7, fc8)");
    const h5::Dims wshape = e.linear ? h5::Dims{e.out, e.in} : h5::Dims{e.out, e.in, e.k, e.k};
    const h5::Dims got = f.check_dataset(group + "/weight", h5::Kind::Float, wshape, "float32");
    const int out = int(got[0]);
    f.check_dataset(group + "/bias", h5::Kind::Float, {out}, "float32");
    LayerWeights lw;
    lw.weight =
        read_tensor(f, group + "/weight",
                    e.linear ? Shape{out, int(e.in), 1, 1} : Shape{out, int(e.in), e.k, e.k});
    lw.bias = read_tensor(f, group + "/bias", Shape{out, 1, 1, 1});
    w.layers[e.name] = std::move(lw);
  }
}

// ---- Keras layout ---------------------------------------------------------------------------

// Keras splits long string-list attributes into name0, name1, ... (HDF5's 64 KiB header limit).
bool keras_strings(const h5::File& f, const std::string& obj, const std::string& name,
                   std::vector<std::string>* out) {
  out->clear();
  if (f.has_attr(obj, name)) {
    *out = f.read_attr_strings(obj, name);
    return true;
  }
  for (int i = 0; f.has_attr(obj, name + std::to_string(i)); ++i) {
    const auto part = f.read_attr_strings(obj, name + std::to_string(i));
    out->insert(out->end(), part.begin(), part.end());
  }
  return !out->empty();
}

// conv3_1 → block3_conv1; fc6 → fc1; fc7 → fc2; fc8 → predictions.
std::string keras_name(const std::string& name) {
  if (name == "fc6") return "fc1";
  if (name == "fc7") return "fc2";
  if (name == "fc8") return "predictions";
  // "convB_K"
  return "block" + name.substr(4, 1) + "_conv" + name.substr(6);
}

struct KerasPaths {
  std::string kernel, bias;
};

// Dataset paths of a layer's kernel and bias, read from its weight_names attribute; both empty
// when the file has no group for the layer.
KerasPaths keras_paths(const h5::File& f, const std::string& root, const std::string& layer,
                       const std::string& expect) {
  const std::string group = (root == "/" ? "" : root) + "/" + layer;
  if (!f.is_group(group)) return {};
  std::vector<std::string> names;
  if (!keras_strings(f, group, "weight_names", &names))
    f.fail("Keras layer '" + layer + "' has no weight_names attribute (expected " + expect + ")");
  if (names.size() != 2)
    f.fail("Keras layer '" + layer + "' lists " + std::to_string(names.size()) +
           " weights in weight_names, expected 2 (" + expect + ")");
  // Keras lists [kernel, bias]; names end in "kernel:0"/"bias:0" (Keras 2) or "_W_1:0"/"_b_1:0".
  return {group + "/" + names[0], group + "/" + names[1]};
}

void read_keras(const h5::File& f, const std::string& root, const std::vector<std::string>& names,
                Weights& w) {
  auto has_layer = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  if (!has_layer("block1_conv1"))
    f.fail("Keras file without layer 'block1_conv1' in layer_names: not a VGG16/VGG19 file");
  w.arch = has_layer("block5_conv4") ? Arch::VGG19 : Arch::VGG16;
  // Keras' VGG: Caffe preprocessing (BGR, 0..255, mean subtraction only).
  w.preprocess.color_order = "BGR";
  w.preprocess.value_range = 255.f;
  const float mean[3] = {103.939f, 116.779f, 123.68f};
  for (int c = 0; c < 3; ++c) {
    w.preprocess.mean[c] = mean[c];
    w.preprocess.std[c] = 1.f;
  }

  std::string missing_fc;
  for (const Expected& e : expected_layers(w.arch)) {
    const std::string kname = keras_name(e.name);
    const h5::Dims kshape = e.linear ? h5::Dims{e.in, e.out} : h5::Dims{e.k, e.k, e.in, e.out};
    const std::string expect = "kernel " + h5::dims_str(kshape) + " float32 and bias (" +
                               (e.out == h5::any_dim ? "N" : std::to_string(e.out)) + ")";
    const KerasPaths paths = keras_paths(f, root, kname, expect);
    if (paths.kernel.empty()) {
      if (!e.linear)
        f.fail("Keras layer '" + kname + "' missing (group '" + root + (root == "/" ? "" : "/") +
               kname + "'; expected " + expect + ")");
      if (missing_fc.empty()) missing_fc = kname;
      continue;
    }
    if (e.linear && !missing_fc.empty())
      f.fail("Keras layer '" + kname + "' present but '" + missing_fc + "' missing");
    if (!e.linear && f.is_dataset(paths.kernel)) {
      const auto info = f.dataset_info(paths.kernel);
      if (info.shape == h5::Dims{e.out, e.in, e.k, e.k} && info.shape != kshape)
        f.fail("dataset '" + paths.kernel + "' has shape " + h5::dims_str(info.shape) +
               ", expected " + h5::dims_str(kshape) +
               " (Theano kernel ordering is not supported: use the "
               "*_tf_dim_ordering_tf_kernels files)");
    }
    const h5::Dims got = f.check_dataset(paths.kernel, h5::Kind::Float, kshape, "float32");
    const int64_t out = e.linear ? got[1] : got[3];
    f.check_dataset(paths.bias, h5::Kind::Float, {out}, "float32");

    LayerWeights lw;
    const int o_n = int(out), i_n = int(e.in);
    if (!e.linear) {
      // HWIO → OIHW
      std::vector<float> k(size_t(e.k) * e.k * i_n * o_n);
      f.read(paths.kernel, k.data(), k.size());
      lw.weight = Tensor(Shape{o_n, i_n, e.k, e.k});
      float* dst = lw.weight.data();
      const int kk = e.k * e.k;
      for (int hw = 0; hw < kk; ++hw)
        for (int i = 0; i < i_n; ++i) {
          const float* src = k.data() + (size_t(hw) * i_n + i) * o_n;
          for (int o = 0; o < o_n; ++o) dst[(size_t(o) * i_n + i) * kk + hw] = src[o];
        }
    } else {
      // (IN, OUT) → (OUT, IN). fc1's input is Flatten of (H,W,C): kernel row (h*7 + w)*C + c
      // holds canonical input j = c*49 + h*7 + w. The 392 MiB fc1 kernel is read one image row
      // h at a time (contiguous kernel rows, friendly to chunked files); within it the writes
      // for one output o are runs of 7 consecutive j.
      lw.weight = Tensor(Shape{o_n, i_n, 1, 1});
      float* dst = lw.weight.data();
      const int plane = e.name == "fc6" ? kFcSide * kFcSide : 1;
      const int c_n = i_n / plane;
      // Positions (h*7 + w) per read: one image row for fc6, else enough rows for ~16 MiB.
      const int hw_step = plane > 1 ? kFcSide : 1;
      const int c_step = plane > 1 ? c_n : std::max(1, (4 << 20) / o_n);
      std::vector<float> buf(size_t(hw_step) * std::min(c_step, c_n) * o_n);
      constexpr int kBlock = 64;
      for (int hw0 = 0; hw0 < plane; hw0 += hw_step)
        for (int c0 = 0; c0 < c_n; c0 += c_step) {
          const int cb = std::min(c_step, c_n - c0);
          // buf row (hw - hw0)*cb + (c - c0) = kernel row hw*c_n + c
          f.read_hyperslab(paths.kernel, {int64_t(hw0) * c_n + c0, 0}, {1, 1}, {1, 1},
                           {int64_t(hw_step) * cb, o_n}, buf.data());
          for (int o0 = 0; o0 < o_n; o0 += kBlock) {
            const int o1 = std::min(o_n, o0 + kBlock);
            for (int c = c0; c < c0 + cb; ++c)
              for (int hw = hw0; hw < hw0 + hw_step; ++hw) {
                const size_t j = size_t(c) * plane + hw;
                const float* src = buf.data() + (size_t(hw - hw0) * cb + (c - c0)) * o_n;
                for (int o = o0; o < o1; ++o) dst[size_t(o) * i_n + j] = src[o];
              }
          }
        }
    }
    lw.bias = read_tensor(f, paths.bias, Shape{o_n, 1, 1, 1});
    w.layers[e.name] = std::move(lw);
  }
}

uint64_t parse_seed(const std::string& spec) {
  const std::string s = spec.substr(std::strlen("random:"));
  uint64_t seed = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), seed);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    throw Error("--weights '" + spec +
                "': SEED must be a non-negative integer (below 2^64), as in random:0");
  return seed;
}

}  // namespace

const char* arch_name(Arch a) {
  return a == Arch::VGG16 ? "vgg16" : "vgg19";
}

Arch parse_arch(const std::string& name) {
  const std::string n = lower(name);
  if (n == "vgg16") return Arch::VGG16;
  if (n == "vgg19") return Arch::VGG19;
  throw Error("unknown architecture '" + name + "'; valid: vgg16, vgg19");
}

std::string sha256_file(const std::string& path) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) throw Error("sha256: cannot read '" + path + "': " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(fp, std::fclose);
  Sha256 h;
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), fp)) > 0) h.update(buf.data(), n);
  if (std::ferror(fp)) throw Error("sha256: cannot read '" + path + "': read error");
  return h.hex_digest();
}

Weights load_weights(const std::string& spec, Arch arch_for_random) {
  if (spec.rfind("random:", 0) == 0) return random_weights(arch_for_random, parse_seed(spec));
  if (spec.empty()) throw Error("--weights: empty; expected random:SEED or an .h5 file");

  if (spec.rfind("random", 0) == 0 && ::access(spec.c_str(), F_OK) != 0)
    throw Error("--weights '" + spec +
                "': no such file; random features are spelled random:SEED, "
                "as in random:0");
  const h5::File f = h5::File::open(spec, quoted_file(spec));
  Weights w;
  w.random = false;
  if (f.has_attr("/", "format")) {
    w.format = "canonical";
    read_canonical(f, w);
  } else {
    std::vector<std::string> names;
    std::string root = "/";
    if (!keras_strings(f, "/", "layer_names", &names) && f.is_group("/model_weights") &&
        keras_strings(f, "/model_weights", "layer_names", &names))
      root = "/model_weights";  // a whole Keras model file: weights live under /model_weights
    if (names.empty())
      f.fail(std::string("unrecognized layout: expected root attribute format=\"") + kFormat +
             "\" (canonical, see weights/README.md) or a Keras VGG16/VGG19 file (root attribute "
             "layer_names)");
    w.format = "keras";
    read_keras(f, root, names, w);
  }
  w.identity = spec + " (sha256 " + sha256_file(spec) + ")";
  return w;
}

void save_weights(const Weights& w, const std::string& path) {
  const std::string ctx = "save_weights '" + path + "'";
  const auto expected = expected_layers(w.arch);
  std::vector<const Expected*> present;
  std::string missing_fc;
  for (const Expected& e : expected) {
    const auto it = w.layers.find(e.name);
    if (it == w.layers.end()) {
      require(e.linear, ctx + ": layer '" + e.name + "' missing");
      if (missing_fc.empty()) missing_fc = e.name;
      continue;
    }
    require(missing_fc.empty(),
            ctx + ": layer '" + e.name + "' present but '" + missing_fc + "' missing");
    const Shape& s = it->second.weight.shape();
    const Shape want{e.out == h5::any_dim ? s.n : int(e.out), int(e.in), e.k, e.k};
    require(s == want && s.n > 0, ctx + ": layer '" + e.name + "' weight has shape " + s.str() +
                                      ", expected " + want.str());
    require(it->second.bias.numel() == size_t(s.n), ctx + ": layer '" + e.name + "' bias has " +
                                                        std::to_string(it->second.bias.numel()) +
                                                        " values, expected " + std::to_string(s.n));
    present.push_back(&e);
  }
  for (const auto& layer : w.layers) {
    const std::string& name =
        layer.first;  // not a structured binding: clang < 16 cannot capture it
    const bool known = std::any_of(expected.begin(), expected.end(),
                                   [&](const Expected& e) { return e.name == name; });
    require(known, ctx + ": layer '" + name + "' is not a layer of " + arch_name(w.arch));
  }

  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, quoted_file(path));
    f.write_attr_string("/", "format", kFormat);
    f.write_attr_string("/", "arch", arch_name(w.arch));
    f.write_attr_string("/", "color_order", w.preprocess.color_order);
    f.write_attr_floats("/", "value_range", {w.preprocess.value_range});
    f.write_attr_floats("/", "mean",
                        {w.preprocess.mean[0], w.preprocess.mean[1], w.preprocess.mean[2]});
    f.write_attr_floats("/", "std",
                        {w.preprocess.std[0], w.preprocess.std[1], w.preprocess.std[2]});
    f.write_attr_int64s("/", "random_init", {w.random ? 1 : 0});
    if (!w.identity.empty()) f.write_attr_string("/", "source", w.identity);
    std::vector<float> scratch;
    for (const Expected* e : present) {
      const LayerWeights& lw = w.layers.at(e->name);
      const Shape& s = lw.weight.shape();
      const std::string group = "/" + e->name;
      f.create_group(group);
      const h5::Dims dims = e->linear ? h5::Dims{s.n, s.c} : h5::Dims{s.n, s.c, s.h, s.w};
      f.write(group + "/weight", host_data(lw.weight, scratch), dims);
      f.write(group + "/bias", host_data(lw.bias, scratch), {s.n});
    }
    f.close();
  });
}

}  // namespace preimage
