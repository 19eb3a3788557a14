// Images: PNG/JPEG/BMP decoding through stb_image (header checked against the limits before any
// pixel is decoded), atomic 8-bit PNG encoding through stb_image_write, separable resizing (area
// averaging when shrinking, bilinear when enlarging) and --size parsing. The stb implementations
// are compiled here, once for the whole library.
#include "preimage/image.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "preimage/atomic_file.h"
#include "preimage/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wconversion"
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO  // files are read here, with errno-based messages
#define STB_IMAGE_IMPLEMENTATION
// stb_image 2.27 calls memcpy(NULL, p, 0) for an empty first IDAT chunk of a PNG (undefined
// behaviour, found by fuzz/fuzz_image): its copies go through one that skips empty copies.
static inline void* preimage_stbi_memcpy(void* dst, const void* src, size_t n) {
  return n ? std::memcpy(dst, src, n) : dst;
}
#define memcpy preimage_stbi_memcpy
#include <stb/stb_image.h>
#undef memcpy
#define STBI_WRITE_NO_STDIO  // PNGs are encoded to memory, then written atomically
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace preimage {
namespace {

std::string image_ctx(const std::string& path) {
  return "image '" + path + "'";
}

std::vector<unsigned char> read_file(const std::string& path, const std::string& ctx) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw Error(ctx + ": no such file");
    throw Error(ctx + ": cannot read: " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw Error(ctx + ": is a directory, expected an image file");
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) throw Error(ctx + ": cannot read: " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(fp, std::fclose);
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, fp)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  if (std::ferror(fp)) throw Error(ctx + ": cannot read: read error");
  return bytes;
}

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown reason";
}

// Per output index along one axis: the first input index and the weights of consecutive inputs.
struct Taps {
  int first = 0;
  std::vector<double> weights;
};

std::vector<Taps> axis_taps(int in, int out) {
  std::vector<Taps> taps(static_cast<size_t>(out));
  if (out < in) {
    // Area averaging: output j covers input [j*s, (j+1)*s), s = in/out.
    const double s = double(in) / out;
    for (int j = 0; j < out; ++j) {
      const double lo = j * s, hi = (j + 1) * s;
      const int i0 = int(std::floor(lo));
      const int i1 = std::min(in, int(std::ceil(hi - 1e-12)));
      taps[size_t(j)].first = i0;
      for (int i = i0; i < i1; ++i) {
        const double overlap = std::min(hi, double(i + 1)) - std::max(lo, double(i));
        taps[size_t(j)].weights.push_back(std::max(0.0, overlap) / s);
      }
    }
  } else {
    // Bilinear with pixel centres at i + 0.5 (align_corners = false), clamped at the edges.
    for (int j = 0; j < out; ++j) {
      double src = (j + 0.5) * in / out - 0.5;
      src = std::clamp(src, 0.0, double(in - 1));
      const int i0 = std::min(int(std::floor(src)), in - 1);
      const double f = src - i0;
      taps[size_t(j)].first = i0;
      taps[size_t(j)].weights = {1.0 - f};
      if (i0 + 1 < in && f > 0) taps[size_t(j)].weights.push_back(f);
    }
  }
  return taps;
}

int parse_positive(const std::string& s, int* value) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return -1;
  *value = v;
  return v > 0 ? 0 : -2;
}

}  // namespace

namespace {

// Debian's stb_image 2.27 trusts a JPEG's Huffman tables (found by fuzz/fuzz_image; upstream
// checks both since 2.28):
// - the 16 code counts of a DHT table: counts summing past 256 make stbi__build_huffman and the
//   value loop write past its 257-entry arrays;
// - that a scan only uses tables some DHT defined: stb's tables live in uninitialized heap, so a
//   scan naming an undefined one makes stbi__jpeg_huff_decode index `values` with garbage (an
//   out-of-bounds read). Which tables a scan uses follows stb: a baseline scan its components'
//   DC and AC tables, a progressive first DC scan (Ss = 0, Ah = 0) the DC tables, a progressive
//   AC scan (Ss > 0) the AC tables, a DC refinement scan none.
// Every segment before and between scans is checked here before stb sees the file. Conservative:
// a table header that runs past its segment is still checked, with bytes past the end read as
// stb does (0). Returns nullptr when the file is fine (or not a JPEG), else what is wrong.
const char* jpeg_huffman_problem(const unsigned char* p, size_t n) {
  const auto at = [&](size_t k) -> unsigned { return k < n ? p[k] : 0; };
  // stb takes any run of 0xFF bytes before the SOI marker (0xFF 0xD8), as between markers.
  size_t i = 0;
  while (i < n && p[i] == 0xFF) ++i;
  if (i == 0 || i >= n || p[i] != 0xD8) return nullptr;  // not a JPEG
  ++i;
  bool defined[2][4] = {};  // [DC = 0, AC = 1][table id]
  bool progressive = false;
  while (i + 1 < n) {
    if (p[i] != 0xFF) {  // entropy-coded data
      ++i;
      continue;
    }
    const unsigned char m = p[i + 1];
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {  // no length
      i += 2;
      continue;
    }
    if (m == 0xD9) return nullptr;  // EOI
    if (i + 3 >= n) return nullptr;
    const size_t len = size_t(p[i + 2]) << 8 | p[i + 3];
    const size_t end = i + 2 + len;
    if (m == 0xC2) progressive = true;
    if (m == 0xC4) {
      for (size_t q = i + 4; q < end && q < n;) {
        size_t total = 0;
        for (size_t k = 1; k <= 16; ++k) total += at(q + k);
        if (total > 256) return "a Huffman table lists more than 256 codes";
        const unsigned tc = p[q] >> 4, th = p[q] & 15;
        if (tc <= 1 && th <= 3) defined[tc][th] = true;  // stb refuses other ids itself
        q += 17 + total;
      }
    }
    if (m == 0xDA) {  // SOS: Ns, Ns × (Cs, Td:Ta), Ss, Se, Ah:Al
      const unsigned ns = at(i + 4);
      const unsigned ss = at(i + 5 + 2 * ns), ah = at(i + 7 + 2 * ns) >> 4;
      const bool dc = !progressive || (ss == 0 && ah == 0);
      const bool ac = !progressive || ss > 0;
      for (unsigned c = 0; c < ns && c < 4; ++c) {
        const unsigned t = at(i + 6 + 2 * c);
        if ((dc && (t >> 4) <= 3 && !defined[0][t >> 4]) ||
            (ac && (t & 15) <= 3 && !defined[1][t & 15]))
          return "a scan uses a Huffman table that no DHT segment defined";
      }
    }
    i += 2 + std::max<size_t>(len, 2);
  }
  return nullptr;
}

// stb_image 2.27 grows its IDAT buffer to whatever a chunk header declares (up to 2^30 bytes per
// chunk, doubling) before it finds the file too short: an 80-byte PNG asked for 2 GiB
// (fuzz/fuzz_image). Every chunk up to IEND must fit in the file. Returns nullptr when the file
// is fine (or not a PNG), else what is wrong.
const char* png_chunk_problem(const unsigned char* p, size_t n) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n < 8 || std::memcmp(p, sig, 8) != 0) return nullptr;
  for (size_t i = 8; i + 8 <= n;) {
    const size_t len =
        size_t(p[i]) << 24 | size_t(p[i + 1]) << 16 | size_t(p[i + 2]) << 8 | p[i + 3];
    if (len > n - i - 8) return "a chunk declares more bytes than the file holds";
    if (std::memcmp(p + i + 4, "IEND", 4) == 0) break;
    i += 12 + len;
  }
  return nullptr;
}

}  // namespace

Tensor load_image(const std::string& path, const ImageLimits& limits) {
  const std::string ctx = image_ctx(path);
  const std::vector<unsigned char> bytes = read_file(path, ctx);
  if (bytes.empty()) throw Error(ctx + ": empty file, expected a PNG, JPEG or BMP image");
  if (bytes.size() > size_t(INT32_MAX)) throw Error(ctx + ": file too large (over 2 GiB)");
  const auto* data = bytes.data();
  const int len = int(bytes.size());
  int w = 0, h = 0, comp = 0;
  if (const char* why = jpeg_huffman_problem(data, bytes.size()))
    throw Error(ctx + ": corrupt JPEG (" + why + ")");
  if (const char* why = png_chunk_problem(data, bytes.size()))
    throw Error(ctx + ": corrupt or truncated PNG (" + why + ")");
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    throw Error(ctx + ": not a PNG, JPEG or BMP image, or corrupt (" + stb_reason() + ")");
  if (w <= 0 || h <= 0) throw Error(ctx + ": header gives an empty image");
  if (w > limits.max_side || h > limits.max_side || size_t(w) * size_t(h) > limits.max_pixels)
    throw Error(ctx + ": " + std::to_string(w) + "x" + std::to_string(h) +
                " pixels exceeds the limits (at most " + std::to_string(limits.max_side) +
                " per side and " + std::to_string(limits.max_pixels) + " pixels)");

  Tensor t(Shape{1, 3, h, w}, Device::CPU);
  float* out = t.data();
  const size_t plane = size_t(h) * w;
  int got_w = 0, got_h = 0, got_c = 0;
  if (stbi_is_16_bit_from_memory(data, len)) {
    std::unique_ptr<stbi_us, void (*)(void*)> px(
        stbi_load_16_from_memory(data, len, &got_w, &got_h, &got_c, 3), stbi_image_free);
    if (!px) throw Error(ctx + ": corrupt or truncated (" + stb_reason() + ")");
    if (got_w != w || got_h != h) throw Error(ctx + ": corrupt (size differs from its header)");
    for (size_t i = 0; i < plane; ++i)
      for (int c = 0; c < 3; ++c) out[c * plane + i] = px.get()[i * 3 + c] / 65535.f;
  } else {
    std::unique_ptr<stbi_uc, void (*)(void*)> px(
        stbi_load_from_memory(data, len, &got_w, &got_h, &got_c, 3), stbi_image_free);
    if (!px) throw Error(ctx + ": corrupt or truncated (" + stb_reason() + ")");
    if (got_w != w || got_h != h) throw Error(ctx + ": corrupt (size differs from its header)");
    for (size_t i = 0; i < plane; ++i)
      for (int c = 0; c < 3; ++c) out[c * plane + i] = px.get()[i * 3 + c] / 255.f;
  }
  if (got_w != w || got_h != h) throw Error(ctx + ": corrupt (size differs from its header)");
  return t;
}

void save_png(const View& x, const std::string& path) {
  const Shape& s = x.shape;
  if (s.n != 1 || (s.c != 1 && s.c != 3) || s.h <= 0 || s.w <= 0)
    throw Error("cannot write '" + path + "': expected an image of shape 1x3xHxW or 1x1xHxW, got " +
                s.str());
  std::vector<float> host;
  const float* src = x.data;
  if (x.device != Device::CPU) {
    Tensor t(s, Device::CPU);
    t.copy_from(x);
    host = t.to_vector();
    src = host.data();
  }
  const size_t plane = s.plane();
  std::vector<unsigned char> px(plane * size_t(s.c));
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < s.c; ++c) {
      const float v = src[size_t(c) * plane + i];
      const float clamped = std::isnan(v) ? 0.f : std::clamp(v, 0.f, 1.f);
      px[i * size_t(s.c) + size_t(c)] = static_cast<unsigned char>(std::lround(clamped * 255.f));
    }
  std::vector<unsigned char> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    out->insert(out->end(), p, p + size);
  };
  if (!stbi_write_png_to_func(sink, &png, s.w, s.h, s.c, px.data(), s.w * s.c))
    throw Error("cannot write '" + path + "': PNG encoding failed");
  write_file_atomically(path, png.data(), png.size());
}

Tensor resize(const View& x, int height, int width) {
  const Shape& s = x.shape;
  if (height <= 0 || width <= 0)
    throw Error("resize: target size " + std::to_string(height) + "x" + std::to_string(width) +
                " (HxW) must be positive");
  if (s.numel() == 0) throw Error("resize: empty input " + s.str());
  std::vector<float> host;
  const float* src = x.data;
  if (x.device != Device::CPU) {
    Tensor t(s, Device::CPU);
    t.copy_from(x);
    host = t.to_vector();
    src = host.data();
  }
  const auto ty = axis_taps(s.h, height), tx = axis_taps(s.w, width);
  Tensor out(Shape{s.n, s.c, height, width}, Device::CPU);
  std::vector<double> rows(size_t(s.h) * width);  // horizontal pass of one plane
  for (size_t p = 0; p < size_t(s.n) * s.c; ++p) {
    const float* in = src + p * s.plane();
    for (int y = 0; y < s.h; ++y)
      for (int j = 0; j < width; ++j) {
        const Taps& t = tx[size_t(j)];
        double acc = 0;
        for (size_t k = 0; k < t.weights.size(); ++k)
          acc += t.weights[k] * in[size_t(y) * s.w + size_t(t.first) + k];
        rows[size_t(y) * width + j] = acc;
      }
    float* o = out.data() + p * size_t(height) * width;
    for (int i = 0; i < height; ++i) {
      const Taps& t = ty[size_t(i)];
      for (int j = 0; j < width; ++j) {
        double acc = 0;
        for (size_t k = 0; k < t.weights.size(); ++k)
          acc += t.weights[k] * rows[(size_t(t.first) + k) * width + j];
        o[size_t(i) * width + j] = float(acc);
      }
    }
  }
  return out;
}

void parse_size(const std::string& spec, int src_h, int src_w, int* out_h, int* out_w,
                const std::string& flag) {
  constexpr int kMax = 65536;
  const std::string bad = flag + " '" + spec + "': ";
  const std::string expect = "expected a positive long side like 512 or WxH like 640x480";
  if (src_h <= 0 || src_w <= 0)
    throw Error(bad + "source image size " + std::to_string(src_h) + "x" + std::to_string(src_w) +
                " is empty");
  const size_t x = spec.find_first_of("xX");
  int w = 0, h = 0;
  if (x != std::string::npos) {
    const int rw = parse_positive(spec.substr(0, x), &w);
    const int rh = parse_positive(spec.substr(x + 1), &h);
    if (rw == -1 || rh == -1) throw Error(bad + "malformed; " + expect);
    if (rw == -2 || rh == -2) throw Error(bad + "sizes must be positive; " + expect);
  } else {
    int side = 0;
    const int r = parse_positive(spec, &side);
    if (r == -1) throw Error(bad + "malformed; " + expect);
    if (r == -2) throw Error(bad + "size must be positive; " + expect);
    if (side > kMax) throw Error(bad + "larger than " + std::to_string(kMax));
    if (src_h >= src_w) {
      h = side;
      w = std::max(1, int(std::lround(double(src_w) * side / src_h)));
    } else {
      w = side;
      h = std::max(1, int(std::lround(double(src_h) * side / src_w)));
    }
  }
  if (w > kMax || h > kMax) throw Error(bad + "larger than " + std::to_string(kMax) + " per side");
  *out_h = h;
  *out_w = w;
}

}  // namespace preimage
