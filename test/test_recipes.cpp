// The recipe API (preimage/recipes.h) as a library user sees it: progress and cancellation,
// resume equivalence, the per-term history, and errors that name options, not CLI flags.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "preimage/error.h"
#include "preimage/recipes.h"
#include "preimage/weights.h"
#include "test/temp_dir.h"

using namespace preimage;

namespace {

// A seeded RGB image of an odd size.
Tensor random_image(int h, int w, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(0.f, 1.f);
  std::vector<float> v(size_t(3) * h * w);
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector({1, 3, h, w}, v);
}

Network small_net(bool avg_pool) {
  NetworkOptions no;
  no.avg_pool = avg_pool;
  return Network(load_weights("random:0", Arch::VGG19), Device::CPU, no);
}

// Style image lists (tensors are move-only).
std::vector<Tensor> copies(std::initializer_list<const Tensor*> ts) {
  std::vector<Tensor> v;
  for (const Tensor* t : ts) v.push_back(t->clone());
  return v;
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

TEST_CASE("recipes: texture history, progress and cancellation", "[recipes]") {
  Network net = small_net(true);
  const Tensor src = random_image(29, 37, 1);
  TextureOptions o;
  o.layers = parse_layer_weights("relu1_1,relu2_1", "");
  o.iterations = 5;
  int calls = 0;
  o.progress = [&](const ProgressInfo& p) {
    ++calls;
    CHECK(p.labels->size() == 2);
    CHECK(p.terms->size() == 2);
    CHECK(p.iteration == calls);
    return true;
  };
  const RecipeResult r = synthesize_texture(net, src, o);
  CHECK(r.image.shape() == Shape{1, 3, 29, 37});
  CHECK(r.term_labels == std::vector<std::string>{"gram:relu1_1", "gram:relu2_1"});
  REQUIRE(r.loss.size() == 5);
  CHECK(calls == 5);
  CHECK(r.loss.back() < r.loss.front());
  CHECK_FALSE(r.cancelled);

  // The callback's false cancels after that iteration.
  TextureOptions c = o;
  c.progress = [](const ProgressInfo& p) { return p.recorded < 2; };
  const RecipeResult rc = synthesize_texture(net, src, c);
  CHECK(rc.cancelled);
  CHECK(rc.loss.size() == 2);
  CHECK(rc.stop_reason == "interrupted");
  // So does the flag.
  std::atomic<bool> flag{true};
  TextureOptions f = o;
  f.progress = nullptr;
  f.cancel = &flag;
  CHECK(synthesize_texture(net, src, f).loss.size() == 1);
}

TEST_CASE("recipes: a cancelled run resumes to the uninterrupted result", "[recipes]") {
  preimage::test::TempDir dir;
  Network net = small_net(false);
  const Tensor img = random_image(35, 27, 2);
  InvertOptions o;
  o.layers = parse_layer_weights("relu1_2", "");
  o.iterations = 3;
  o.octaves = 2;
  o.checkpoint_prefix = (dir.path() / "inv").string();
  o.settings = {{"k", "v"}};
  const RecipeResult full = invert(&net, img, o);
  InvertOptions a = o;
  a.progress = [](const ProgressInfo& p) { return p.recorded < 5; };  // in the second octave
  const RecipeResult part = invert(&net, img, a);
  REQUIRE(part.cancelled);
  CHECK(std::filesystem::exists(part.checkpoint));
  InvertOptions b = o;
  b.resume = true;
  int resumed_at = -1;
  b.on_resume = [&](const std::string&, int it) { resumed_at = it; };
  const RecipeResult rest = invert(&net, img, b);
  CHECK(rest.resumed);
  CHECK(resumed_at == 2);
  CHECK(rest.loss.size() == 6);
  CHECK(rest.loss == full.loss);
  CHECK(rest.image.to_vector() == full.image.to_vector());
  CHECK_FALSE(std::filesystem::exists(part.checkpoint));  // a finished run removes them
  // Other settings: refused, naming the key.
  InvertOptions d = a;
  const RecipeResult again = invert(&net, img, d);
  REQUIRE(again.cancelled);
  d.resume = true;
  d.settings = {{"k", "w"}};
  const std::string e = error_of([&] { invert(&net, img, d); });
  CHECK(e.find("options.resume") != std::string::npos);
  CHECK(e.find("k 'v' then, 'w' now") != std::string::npos);
}

TEST_CASE("recipes: errors name the option", "[recipes]") {
  Network net = small_net(true);
  const Tensor img = random_image(21, 23, 3);
  StyleOptions s;
  s.iterations = 1;
  s.style_blend_weights = {1.f, 2.f};
  CHECK(error_of([&] {
          style_transfer(net, img, copies({&img}), s);
        }).find("options.style_blend_weights") != std::string::npos);
  s.style_blend_weights.clear();
  s.style_scale = 0;
  CHECK(error_of([&] {
          style_transfer(net, img, copies({&img}), s);
        }).find("options.style_scale") != std::string::npos);
  TextureOptions t;
  t.layers.clear();
  CHECK(error_of([&] { synthesize_texture(net, img, t); }).find("options.layers") !=
        std::string::npos);
  t.layers = parse_layer_weights("relu1_1", "");
  t.iterations = 0;
  CHECK(error_of([&] { synthesize_texture(net, img, t); }).find("options.iterations") !=
        std::string::npos);
  t.iterations = 1;
  t.resume = true;
  CHECK(error_of([&] { synthesize_texture(net, img, t); }).find("options.checkpoint_prefix") !=
        std::string::npos);
  VisualizeOptions v;
  v.layers = parse_layer_weights("relu1_1", "");
  v.channel = 64;
  const std::string ve = error_of([&] { visualize(net, Tensor(), v); });
  CHECK(ve.find("options.channel 64 out of range") != std::string::npos);
  t.resume = false;
  t.size = "-3";
  CHECK(error_of([&] { synthesize_texture(net, img, t); }).find("options.size '-3'") !=
        std::string::npos);
  t.size = "60000";
  CHECK(error_of([&] { synthesize_texture(net, img, t); }).find("options.size") !=
        std::string::npos);
}

TEST_CASE("recipes: style blends several style images", "[recipes]") {
  Network net = small_net(true);
  const Tensor content = random_image(19, 23, 4), a = random_image(17, 15, 5),
               b = random_image(21, 19, 6);
  StyleOptions o;
  o.layers = parse_layer_weights("relu1_1,relu1_2", "");
  o.content_layers = parse_layer_weights("relu1_2", "");
  o.iterations = 2;
  const RecipeResult one = style_transfer(net, content, copies({&a}), o);
  o.style_blend_weights = {2.f, 0.f};  // normalized: a at 1, b at 0
  const RecipeResult blend = style_transfer(net, content, copies({&a, &b}), o);
  CHECK(blend.term_labels.size() == 5);
  CHECK(blend.term_labels[1] == "style1:relu1_1");
  CHECK(blend.image.to_vector() == one.image.to_vector());
  o.style_blend_weights.clear();
  const RecipeResult equal = style_transfer(net, content, copies({&a, &b}), o);
  CHECK(equal.image.to_vector() != one.image.to_vector());
}
