// Image I/O: decoding PNG/JPEG/BMP/grey written here with stb_image_write, one clear Error per
// kind of bad input, atomic PNG saving (nothing left behind on failure, EFBIG reported), resize
// against hand-computed values and --size parsing.
#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>  // implementation compiled in engine/io/image.cpp

#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "test/h5_util.h"

using namespace preimage;
using preimage::test::TempDir;

namespace {

template <class F>
void require_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    return;
  }
  FAIL("expected preimage::Error containing '" << *parts.begin() << "'");
}

void append(void* ctx, void* data, int size) {
  auto* out = static_cast<std::string*>(ctx);
  out->append(static_cast<const char*>(data), size_t(size));
}

// Interleaved 8-bit pixels of a w x h image with comp channels: a deterministic pattern.
std::vector<unsigned char> pattern(int w, int h, int comp, bool smooth = false) {
  std::vector<unsigned char> px(size_t(w) * h * comp);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < comp; ++c)
        px[(size_t(y) * w + x) * comp + c] =
            smooth ? static_cast<unsigned char>(40 + 3 * x + 2 * y + 50 * c)
                   : static_cast<unsigned char>((x * 37 + y * 91 + c * 53) % 256);
  return px;
}

std::string encode(const char* format, int w, int h, int comp,
                   const std::vector<unsigned char>& px) {
  std::string out;
  const std::string f = format;
  int ok = 0;
  if (f == "png") ok = stbi_write_png_to_func(append, &out, w, h, comp, px.data(), w * comp);
  if (f == "bmp") ok = stbi_write_bmp_to_func(append, &out, w, h, comp, px.data());
  if (f == "jpg") ok = stbi_write_jpg_to_func(append, &out, w, h, comp, px.data(), 100);
  REQUIRE(ok);
  return out;
}

// Expected planar RGB value of pixel (x, y), channel c, from interleaved comp-channel pixels.
float expected(const std::vector<unsigned char>& px, int w, int comp, int x, int y, int c) {
  const int src = comp <= 2 ? 0 : c;  // grey (and grey+alpha) → R = G = B
  return px[(size_t(y) * w + x) * comp + src] / 255.f;
}

double max_abs_diff(const Tensor& t, const std::vector<unsigned char>& px, int w, int h, int comp) {
  REQUIRE(t.shape() == Shape{1, 3, h, w});
  double worst = 0;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        worst = std::max(worst, double(std::fabs(t.data()[(size_t(c) * h + y) * w + x] -
                                                 expected(px, w, comp, x, y, c))));
  return worst;
}

}  // namespace

TEST_CASE("image load png jpeg bmp grey", "[image]") {
  TempDir dir;
  const int w = 7, h = 5;

  SECTION("png rgb, rgba, grey, grey+alpha: exact") {
    for (int comp : {3, 4, 1, 2}) {
      INFO("channels " << comp);
      const auto px = pattern(w, h, comp);
      const std::string p = dir.file("c" + std::to_string(comp) + ".png");
      preimage::test::write_bytes(p, encode("png", w, h, comp, px));
      const Tensor t = load_image(p);
      CHECK(max_abs_diff(t, px, w, h, comp) == 0.0);
    }
  }
  SECTION("bmp: exact") {
    const auto px = pattern(w, h, 3);
    const std::string p = dir.file("a.bmp");
    preimage::test::write_bytes(p, encode("bmp", w, h, 3, px));
    CHECK(max_abs_diff(load_image(p), px, w, h, 3) == 0.0);
  }
  SECTION("jpeg: within compression error") {
    const int jw = 24, jh = 16;
    const auto px = pattern(jw, jh, 3, true);
    const std::string p = dir.file("a.jpg");
    preimage::test::write_bytes(p, encode("jpg", jw, jh, 3, px));
    CHECK(max_abs_diff(load_image(p), px, jw, jh, 3) <= 6.0 / 255);
  }
  SECTION("grey jpeg becomes RGB") {
    const int jw = 16, jh = 16;
    const auto px = pattern(jw, jh, 1, true);
    const std::string p = dir.file("g.jpg");
    preimage::test::write_bytes(p, encode("jpg", jw, jh, 1, px));
    const Tensor t = load_image(p);
    CHECK(max_abs_diff(t, px, jw, jh, 1) <= 6.0 / 255);
    for (size_t i = 0; i < size_t(jw) * jh; ++i) {
      CHECK(t.data()[i] == t.data()[i + jw * jh]);
      CHECK(t.data()[i] == t.data()[i + 2 * jw * jh]);
    }
  }
}

TEST_CASE("image bad input", "[image]") {
  TempDir dir;
  SECTION("missing file") {
    const std::string p = dir.file("nope.png");
    require_error([&] { load_image(p); }, {"image '" + p + "': no such file"});
  }
  SECTION("a directory") {
    require_error([&] { load_image(dir.path().string()); }, {dir.path().string(), "directory"});
  }
  SECTION("empty file") {
    const std::string p = dir.file("empty.png");
    preimage::test::write_bytes(p, "");
    require_error([&] { load_image(p); }, {"image '" + p + "'", "empty"});
  }
  SECTION("not an image") {
    const std::string p = dir.file("notes.png");
    preimage::test::write_bytes(p, "just some text, certainly not a picture\n");
    require_error([&] { load_image(p); }, {"image '" + p + "'", "not a PNG, JPEG or BMP image"});
  }
  SECTION("truncated png") {
    const auto px = pattern(64, 64, 3);
    const std::string png = encode("png", 64, 64, 3, px);
    const std::string p = dir.file("cut.png");
    preimage::test::write_bytes(p, png.substr(0, png.size() / 2));
    require_error([&] { load_image(p); }, {"image '" + p + "'", "corrupt or truncated"});
  }
  SECTION("over the limits, refused from the header") {
    const auto px = pattern(40, 10, 3);
    const std::string p = dir.file("big.png");
    preimage::test::write_bytes(p, encode("png", 40, 10, 3, px));
    ImageLimits side;
    side.max_side = 32;
    require_error([&] { load_image(p, side); }, {"image '" + p + "'", "40x10", "limits", "32"});
    ImageLimits pixels;
    pixels.max_pixels = 399;
    require_error([&] { load_image(p, pixels); }, {"image '" + p + "'", "399"});
    pixels.max_pixels = 400;
    CHECK(load_image(p, pixels).shape() == Shape{1, 3, 10, 40});
  }
  SECTION("--size: valid forms") {
    int h = 0, w = 0;
    parse_size("512", 100, 200, &h, &w);
    CHECK((h == 256 && w == 512));
    parse_size("512", 300, 200, &h, &w);
    CHECK((h == 512 && w == 341));
    parse_size("640x480", 10, 10, &h, &w);
    CHECK((h == 480 && w == 640));
    parse_size("3X2", 10, 10, &h, &w);
    CHECK((h == 2 && w == 3));
    parse_size("1", 1, 1000, &h, &w);
    CHECK((h == 1 && w == 1));
  }
  SECTION("--size: non-positive or malformed") {
    int h = 0, w = 0;
    for (const char* bad : {"0", "-5", "", "abc", "12x", "x12", "10x0", "0x10", "5.5", " 5", "5 ",
                            "1e3", "99999999999", "3x-4", "100000"}) {
      INFO("spec '" << bad << "'");
      require_error([&] { parse_size(bad, 10, 10, &h, &w); }, {"--size '" + std::string(bad)});
    }
    require_error([&] { parse_size("0", 10, 10, &h, &w, "--content-size"); },
                  {"--content-size '0'", "positive"});
  }
}

TEST_CASE("image save atomic", "[image]") {
  TempDir dir;
  const int w = 6, h = 4;
  std::vector<float> v(3 * w * h);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 11) / 10.f;
  v[0] = -0.5f;  // clamped to 0
  v[1] = 1.7f;   // clamped to 1
  const Tensor img = Tensor::from_vector(Shape{1, 3, h, w}, v);

  SECTION("round trip, overwriting, no stray temporary file") {
    const std::string p = dir.file("out.png");
    preimage::test::write_bytes(p, "old content");
    save_png(img.view(), p);
    CHECK(dir.entries() == std::vector<std::string>{"out.png"});
    const Tensor back = load_image(p);
    REQUIRE(back.shape() == img.shape());
    for (size_t i = 0; i < v.size(); ++i) {
      const float want = std::round(std::clamp(v[i], 0.f, 1.f) * 255.f) / 255.f;
      CHECK(back.data()[i] == want);
    }
  }
  SECTION("grey") {
    const Tensor grey =
        Tensor::from_vector(Shape{1, 1, h, w}, std::vector<float>(v.begin(), v.begin() + w * h));
    const std::string p = dir.file("grey.png");
    save_png(grey.view(), p);
    const Tensor back = load_image(p);
    CHECK(back.data()[5] == back.data()[5 + w * h]);
    CHECK(back.data()[5] == std::round(v[5] * 255.f) / 255.f);
  }
  SECTION("into a directory that does not exist: error, nothing written") {
    const std::string p = dir.file("no_such_dir/out.png");
    require_error([&] { save_png(img.view(), p); }, {"'" + p + "'", "No such file or directory"});
    CHECK_FALSE(std::filesystem::exists(p));
    CHECK(dir.entries().empty());
  }
  SECTION("wrong shape") {
    const Tensor bad = Tensor::zeros(Shape{2, 3, h, w});
    const std::string p = dir.file("bad.png");
    require_error([&] { save_png(bad.view(), p); }, {"'" + p + "'", "2x3x4x6"});
    CHECK(dir.entries().empty());
  }
  SECTION("file size limit (EFBIG): error names the reason, temporary file removed") {
    const std::string p = dir.file("big.bin");
    std::string payload(64 * 1024, 'x');
    struct rlimit old {};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 4096;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      write_file_atomically(p, payload.data(), payload.size());
    } catch (const Error& e) {
      message = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    INFO("message: " << message);
    CHECK(message.find("'" + p + "'") != std::string::npos);
    CHECK(message.find("File too large") != std::string::npos);
    CHECK(dir.entries().empty());
  }
  SECTION("write_atomically removes the temporary file when the writer throws") {
    const std::string p = dir.file("x.h5");
    CHECK_THROWS_AS(write_atomically(p,
                                     [](const std::string& tmp) {
                                       preimage::test::write_bytes(tmp, "partial");
                                       throw Error("writer failed");
                                     }),
                    Error);
    CHECK(dir.entries().empty());
  }
}

TEST_CASE("image resize", "[image]") {
  SECTION("shrink by area averaging, 4 -> 2 and 3 -> 2") {
    const Tensor x = Tensor::from_vector(Shape{1, 1, 1, 4}, {1, 3, 5, 9});
    const Tensor y = resize(x.view(), 1, 2);
    CHECK(y.to_vector() == std::vector<float>{2, 7});
    const Tensor x3 = Tensor::from_vector(Shape{1, 1, 3, 1}, {3, 6, 12});
    const auto y3 = resize(x3.view(), 2, 1).to_vector();
    CHECK(y3[0] == Approx((3 + 0.5 * 6) / 1.5));
    CHECK(y3[1] == Approx((0.5 * 6 + 12) / 1.5));
  }
  SECTION("enlarge bilinearly, 2 -> 4 (pixel centres, edges clamped)") {
    const Tensor x = Tensor::from_vector(Shape{1, 1, 1, 2}, {4, 8});
    const auto y = resize(x.view(), 1, 4).to_vector();
    REQUIRE(y.size() == 4);
    CHECK(y[0] == Approx(4));
    CHECK(y[1] == Approx(0.75 * 4 + 0.25 * 8));
    CHECK(y[2] == Approx(0.25 * 4 + 0.75 * 8));
    CHECK(y[3] == Approx(8));
  }
  SECTION("separable: shrink rows, enlarge columns; planes independent") {
    // 2 images x 3 channels of 4x2; plane p holds p*100 + 10*row + col.
    std::vector<float> v;
    for (int p = 0; p < 6; ++p)
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 2; ++c) v.push_back(float(p * 100 + 10 * r + c));
    const Tensor x = Tensor::from_vector(Shape{2, 3, 4, 2}, v);
    const Tensor y = resize(x.view(), 2, 4);
    REQUIRE(y.shape() == Shape{2, 3, 2, 4});
    const auto out = y.to_vector();
    // rows: (r0+r1)/2 = 5, (r2+r3)/2 = 25; columns 0,1 -> 0, 0.25, 0.75, 1.
    const float cols[4] = {0, 0.25f, 0.75f, 1};
    for (int p = 0; p < 6; ++p)
      for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 4; ++c)
          CHECK(out[size_t((p * 2 + r) * 4 + c)] == Approx(p * 100 + (r ? 25 : 5) + cols[c]));
  }
  SECTION("same size is the identity; constants stay constant") {
    const Tensor x = Tensor::from_vector(Shape{1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
    CHECK(resize(x.view(), 2, 3).to_vector() == x.to_vector());
    const Tensor c = Tensor::full(Shape{1, 3, 13, 17}, 0.3f);
    for (auto [hh, ww] : {std::pair{5, 7}, {29, 31}, {13, 3}, {1, 1}}) {
      for (float val : resize(c.view(), hh, ww).to_vector()) CHECK(val == Approx(0.3f));
    }
  }
  SECTION("bad target size") {
    const Tensor x = Tensor::zeros(Shape{1, 1, 2, 2});
    require_error([&] { resize(x.view(), 0, 3); }, {"resize", "positive"});
  }
}
