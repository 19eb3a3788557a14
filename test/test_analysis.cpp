// Analysis tools on synthetic images with a known answer: a planted patch that drives a chosen
// channel gets the saliency mass, the occlusion peak and the top patch; guided maps are
// non-negative; a targeted attack on a head trained here (L-BFGS) reaches p > 0.9 within ε;
// PCA and t-SNE (exact and Barnes–Hut) keep planted clusters apart; feature files round-trip and
// bad input (empty directory, unknown layer/channel, mismatched files) is refused clearly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "preimage/analysis.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/weights.h"
#include "test/h5_util.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::random_vector;
using preimage::test::TempDir;

namespace {

constexpr int kSide = 48, kPy = 28, kPx = 10, kPatch = 8;

// Grey image with a seeded colourful kPatch×kPatch square at (kPy, kPx).
Tensor planted_image(bool with_patch = true, uint64_t seed = 7) {
  std::vector<float> v(size_t(3) * kSide * kSide, 0.5f);
  if (with_patch) {
    const auto r = random_vector(size_t(3) * kPatch * kPatch, seed, 0.f, 1.f);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < kPatch; ++y)
        for (int x = 0; x < kPatch; ++x)
          v[(size_t(c) * kSide + kPy + y) * kSide + kPx + x] =
              r[(size_t(c) * kPatch + y) * kPatch + x];
  }
  return Tensor::from_vector({1, 3, kSide, kSide}, v);
}

// A channel of `tap` that is silent everywhere on the grey background and responds most to the
// planted patch.
int planted_channel(Network& net, const std::string& tap) {
  Tensor bg = planted_image(false), im = planted_image(true);
  net.forward(bg.view(), {tap});
  const std::vector<float> b = net.tap(tap).to_vector();
  const Shape s = net.tap(tap).shape();
  net.forward(im.view(), {tap});
  const std::vector<float> a = net.tap(tap).to_vector();
  int best = -1;
  double best_v = 0;
  for (int c = 0; c < s.c; ++c) {
    double bmax = 0, amean = 0;
    for (size_t i = 0; i < s.plane(); ++i) {
      bmax = std::max(bmax, double(b[c * s.plane() + i]));
      amean += a[c * s.plane() + i];
    }
    if (bmax == 0 && amean > best_v) {
      best_v = amean;
      best = c;
    }
  }
  REQUIRE(best >= 0);
  return best;
}

// Fraction of a map's mass inside the planted square dilated by `margin`.
double mass_near_patch(const Tensor& map, int margin) {
  const std::vector<float> m = map.to_vector();
  double in = 0, all = 0;
  for (int y = 0; y < kSide; ++y)
    for (int x = 0; x < kSide; ++x) {
      const double v = m[size_t(y) * kSide + x];
      all += v;
      if (y >= kPy - margin && y < kPy + kPatch + margin && x >= kPx - margin &&
          x < kPx + kPatch + margin)
        in += v;
    }
  return all > 0 ? in / all : 0;
}

// Tinted noise images: class 0 reddish, class 1 bluish.
Tensor tinted(int cls, uint64_t seed, int side = 32) {
  auto v = random_vector(size_t(3) * side * side, seed, 0.3f, 0.7f);
  const size_t plane = size_t(side) * side;
  for (size_t i = 0; i < plane; ++i) v[(cls == 0 ? 0 : 2) * plane + i] += 0.15f;
  return Tensor::from_vector({1, 3, side, side}, v);
}

LinearHead trained_head(Network& net, const std::string& tap) {
  std::vector<float> feats;
  std::vector<int> labels;
  int dim = 0;
  for (int i = 0; i < 16; ++i) {
    Tensor x = tinted(i % 2, 100 + i);
    net.forward(x.view(), {tap});
    const auto p = mean_pool(net.tap(tap).view());
    dim = int(p.size());
    feats.insert(feats.end(), p.begin(), p.end());
    labels.push_back(i % 2);
  }
  return train_linear_head(tap, feats, dim, labels, 2, 1e-2f, 100);
}

// Planted Gaussian clusters: k clusters of m points in d dimensions.
std::vector<float> clusters(int k, int m, int d, uint64_t seed, std::vector<int>* label,
                            float spread = 6.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> centers(size_t(k) * d), x;
  for (auto& c : centers) c = spread * nd(rng);
  for (int c = 0; c < k; ++c)
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < d; ++j) x.push_back(centers[size_t(c) * d + j] + nd(rng));
      label->push_back(c);
    }
  return x;
}

// Checks a 2-D PCA layout y of (n, d) rows: centred, var(PC1) = the covariance's top
// eigenvalue (power iteration in double), var(PC1) >= var(PC2).
bool pc1_variance_matches(const std::vector<float>& x, int n, int d, const std::vector<double>& y) {
  std::vector<double> mean(d, 0), cov(size_t(d) * d, 0), v(d, 1.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) mean[j] += x[size_t(i) * d + j] / double(n);
  for (int i = 0; i < n; ++i)
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b)
        cov[a * d + b] += (x[size_t(i) * d + a] - mean[a]) * (x[size_t(i) * d + b] - mean[b]);
  double lambda = 0;
  for (int it = 0; it < 3000; ++it) {
    std::vector<double> w(d, 0);
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b) w[a] += cov[a * d + b] * v[b];
    lambda = 0;
    for (double e : w) lambda += e * e;
    lambda = std::sqrt(lambda);
    for (int a = 0; a < d; ++a) v[a] = w[a] / lambda;
  }
  double m1 = 0, m2 = 0, var1 = 0, var2 = 0;
  for (int i = 0; i < n; ++i) {
    m1 += y[2 * i] / n;
    m2 += y[2 * i + 1] / n;
    var1 += y[2 * i] * y[2 * i];
    var2 += y[2 * i + 1] * y[2 * i + 1];
  }
  INFO("mean " << m1 << "," << m2 << " var1 " << var1 << " lambda " << lambda << " var2 " << var2);
  CHECK(std::fabs(var1 - lambda) <= 1e-8 * lambda);
  return std::fabs(m1) < 1e-9 && std::fabs(m2) < 1e-9 &&
         std::fabs(var1 - lambda) <= 1e-8 * lambda && var1 >= var2;
}

// Mean and minimum over points of the fraction of their 10 nearest 2-D neighbours that share
// their cluster.
std::pair<double, double> knn_kept(const std::vector<double>& y, const std::vector<int>& label) {
  const int n = int(label.size());
  double mean = 0, lo = 1;
  for (int i = 0; i < n; ++i) {
    std::vector<std::pair<double, int>> d;
    for (int j = 0; j < n; ++j)
      if (j != i) {
        const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
        d.push_back({dx * dx + dy * dy, j});
      }
    std::partial_sort(d.begin(), d.begin() + 10, d.end());
    int same = 0;
    for (int k = 0; k < 10; ++k) same += label[d[k].second] == label[i];
    mean += same / 10.0 / n;
    lo = std::min(lo, same / 10.0);
  }
  return {mean, lo};
}

}  // namespace

TEST_CASE("analysis saliency: the planted patch gets the gradient and guided mass", "[analysis]") {
  Network net(random_weights(Arch::VGG16, 1), Device::CPU);
  const std::string tap = "relu2_1";
  Target t;
  t.tap = tap;
  t.channel = planted_channel(net, tap);
  Tensor im = planted_image();
  check_target(net, t, im.shape());
  Tensor g = saliency_gradient(net, im.view(), t, false);
  Tensor gg = saliency_gradient(net, im.view(), t, true);
  CHECK(g.shape() == Shape{1, 1, kSide, kSide});
  CHECK_FALSE(net.options().guided_relu);  // restored
  // The gradient lives where the channel's active units see: the patch dilated by the
  // receptive field (10 px at relu2_1). Most of it within half a receptive field of the patch
  // (a region of 14% of the image), all of it within one.
  const int rf = receptive_field(net, tap).size;
  for (const Tensor* m : {&g, &gg}) {
    INFO("channel " << t.channel << (m == &g ? " plain" : " guided") << ": mass within " << rf / 2
                    << " px " << mass_near_patch(*m, rf / 2) << ", within " << rf << " px "
                    << mass_near_patch(*m, rf));
    CHECK(mass_near_patch(*m, rf / 2) > 0.75);
    CHECK(mass_near_patch(*m, rf) > 0.999);
    // Denser on the patch itself than anywhere else on average.
    const double in = mass_near_patch(*m, 0), area = double(kPatch * kPatch) / (kSide * kSide);
    CHECK(in / area > 3 * (1 - in) / (1 - area));
  }
  const auto gv = gg.to_vector();
  CHECK(*std::min_element(gv.begin(), gv.end()) >= 0.f);
  CHECK(*std::max_element(gv.begin(), gv.end()) > 0.f);
  // The guided map differs from the plain one (negative gradients were cut).
  CHECK(test::max_rel_error(gv, g.to_vector()) > 1e-3);
}

TEST_CASE("analysis occlusion: the map peaks on the planted patch", "[analysis]") {
  Network net(random_weights(Arch::VGG16, 1), Device::CPU);
  Target t;
  t.tap = "relu2_1";
  t.channel = planted_channel(net, t.tap);
  Tensor im = planted_image();
  Tensor m = saliency_occlusion(net, im.view(), t, 8, 4, 7);  // batch 7: a ragged last batch
  const auto v = m.to_vector();
  const size_t at = size_t(std::max_element(v.begin(), v.end()) - v.begin());
  const int y = int(at) / kSide, x = int(at) % kSide;
  INFO("peak at " << y << "," << x);
  CHECK(y >= kPy - 4);
  CHECK(y < kPy + kPatch + 4);
  CHECK(x >= kPx - 4);
  CHECK(x < kPx + kPatch + 4);
  CHECK(mass_near_patch(m, 8) > 0.7);
  // Batching does not change the map (a coarser grid, batches of 1 and of 4).
  Tensor c1 = saliency_occlusion(net, im.view(), t, 12, 9, 1);
  Tensor c4 = saliency_occlusion(net, im.view(), t, 12, 9, 4);
  CHECK(test::max_rel_error(c1.to_vector(), c4.to_vector()) < 1e-4);
  CHECK_THROWS_WITH(saliency_occlusion(net, im.view(), t, 0, 4), Catch::Contains("--patch"));
}

TEST_CASE("analysis scores: class log-probability and neuron gradients vs differences",
          "[analysis][grad]") {
  Network net(random_weights(Arch::VGG16, 2), Device::CPU);
  const LinearHead head = trained_head(net, "relu1_2");
  Tensor x = tinted(0, 9, 19);
  for (int kind = 0; kind < 2; ++kind) {
    Target t;
    t.tap = "relu1_2";
    if (kind == 0) {
      t.head = &head;
      t.class_index = 1;
    } else {
      t.channel = 3;
      t.y = 5;
      t.x = 11;
    }
    Tensor g;
    evaluate_target(net, x.view(), t, &g, kind == 0);
    const auto gv = g.to_vector();
    auto f = [&](const std::vector<float>& v) {
      Tensor xt = Tensor::from_vector(x.shape(), v);
      const Scores s = evaluate_target(net, xt.view(), t);
      return kind == 0 ? std::log(s.probability[0]) : s.score[0];
    };
    // The largest-gradient entries.
    std::vector<size_t> order(gv.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 6, order.end(),
                      [&](size_t a, size_t b) { return std::fabs(gv[a]) > std::fabs(gv[b]); });
    for (int k = 0; k < 6; ++k) {
      std::vector<float> p = x.to_vector(), m = p;
      const float h = 2e-3f;
      p[order[k]] += h;
      m[order[k]] -= h;
      const double fd = (f(p) - f(m)) / (2.0 * h);
      INFO("kind " << kind << " entry " << order[k] << " analytic " << gv[order[k]] << " fd "
                   << fd);
      CHECK(std::fabs(fd - gv[order[k]]) <= 0.03 * std::fabs(gv[order[k]]) + 1e-5);
    }
  }
}

TEST_CASE("analysis adversarial: targeted attack on a trained head within epsilon", "[analysis]") {
  Network net(random_weights(Arch::VGG16, 3), Device::CPU);
  const LinearHead head = trained_head(net, "relu2_1");
  CHECK(head.accuracy == 1.f);
  // The head separates its training classes.
  for (int i = 0; i < 4; ++i) {
    Target t{"relu2_1", -1, -1, -1, &head, i % 2};
    Tensor x = tinted(i % 2, 100 + i);
    CHECK(evaluate_target(net, x.view(), t).probability[0] > 0.5);
  }
  Target t{"relu2_1", -1, -1, -1, &head, 1};
  Tensor x = tinted(0, 555);  // a fresh red image
  AttackOptions o;
  o.epsilon = 16.f / 255.f;  // well under the 0.15 tint that separates the classes
  o.steps = 60;
  o.step_size = o.epsilon / 8;
  const AttackResult r = attack(net, x.view(), t, o, 0.95);
  INFO("p before " << r.prob_before << " after " << r.prob_after << " linf " << r.linf << " steps "
                   << r.steps);
  CHECK(r.prob_before < 0.5);
  CHECK(r.prob_after > 0.9);
  CHECK(r.linf <= o.epsilon + 1e-6);
  CHECK(r.l2 > 0);
  const auto v = r.image.to_vector();
  CHECK(*std::min_element(v.begin(), v.end()) >= 0.f);
  CHECK(*std::max_element(v.begin(), v.end()) <= 1.f);
  // FGSM: one step of size ε raises the target's probability.
  AttackOptions f = o;
  f.iterative = false;
  const AttackResult rf = attack(net, x.view(), t, f);
  CHECK(rf.steps == 1);
  CHECK(rf.prob_after > rf.prob_before);
  CHECK(rf.linf <= o.epsilon + 1e-6);
  // Fooling image: from grey noise with a full budget.
  Tensor noise = Tensor::from_vector({1, 3, 32, 32}, random_vector(3 * 32 * 32, 8, 0.4f, 0.6f));
  Target t0{"relu2_1", -1, -1, -1, &head, 0};
  AttackOptions fo;
  fo.epsilon = 1.f;
  fo.steps = 40;
  fo.step_size = 0.01f;
  const AttackResult rn = attack(net, noise.view(), t0, fo, 0.99);
  CHECK(rn.prob_after > 0.9);
  // A channel target: the unit's score rises.
  Target tc;
  tc.tap = "relu2_1";
  {  // the most active channel of x (a silent one has no gradient to follow)
    net.forward(x.view(), {"relu2_1"});
    const auto p = mean_pool(net.tap("relu2_1").view());
    tc.channel = int(std::max_element(p.begin(), p.end()) - p.begin());
  }
  const AttackResult rc = attack(net, x.view(), tc, o);
  CHECK(rc.score_after > rc.score_before);
  CHECK(rc.prob_after == -1);
}

TEST_CASE("analysis PCA separates planted clusters and matches power iteration", "[analysis]") {
  std::vector<int> label;
  const int d = 12;
  const auto x = clusters(3, 30, d, 4, &label);
  const int n = int(label.size());
  const auto y = pca(x, n, d, 2);
  // Each point is closer to its own cluster's 2-D centroid than to the others.
  double cx[3] = {}, cy[3] = {};
  for (int i = 0; i < n; ++i) {
    cx[label[i]] += y[2 * i] / 30;
    cy[label[i]] += y[2 * i + 1] / 30;
  }
  int right = 0;
  for (int i = 0; i < n; ++i) {
    int best = 0;
    double bd = 1e300;
    for (int c = 0; c < 3; ++c) {
      const double dd = std::hypot(y[2 * i] - cx[c], y[2 * i + 1] - cy[c]);
      if (dd < bd) bd = dd, best = c;
    }
    right += best == label[i];
  }
  CHECK(right == n);
  // Variance along PC1 = the covariance's top eigenvalue (power iteration in double), for tall
  // data (covariance route) and wide data (D > N: Gram route).
  CHECK(pc1_variance_matches(x, n, d, y));
  std::vector<int> lw;
  const auto xw = clusters(2, 6, 40, 5, &lw);
  CHECK(pc1_variance_matches(xw, 12, 40, pca(xw, 12, 40, 2)));
  // Two points span one direction: the second coordinate is 0, not rounding noise.
  const auto y2 = pca(std::vector<float>(xw.begin(), xw.begin() + 80), 2, 40, 2);
  CHECK(std::fabs(y2[1]) < 1e-9);
  CHECK(std::fabs(y2[3]) < 1e-9);
  CHECK(y2[0] == Approx(-y2[2]));
}

TEST_CASE("analysis t-SNE keeps 10-NN inside planted clusters (exact and Barnes-Hut)",
          "[analysis]") {
  std::vector<int> label;
  const auto x = clusters(4, 40, 10, 11, &label);
  const int n = int(label.size());
  TsneOptions o;
  o.perplexity = 15;
  o.iterations = 400;
  o.seed = 3;
  const auto y = tsne(x, n, 10, o);
  const auto [mean, lo] = knn_kept(y, label);
  INFO("exact: mean " << mean << " min " << lo);
  CHECK(lo >= 0.9);
  bool finite = true;
  for (double v : y) finite = finite && std::isfinite(v);
  CHECK(finite);
  o.exact_below = 0;  // force Barnes–Hut
  const auto yb = tsne(x, n, 10, o);
  const auto [mb, lb] = knn_kept(yb, label);
  INFO("Barnes-Hut: mean " << mb << " min " << lb);
  CHECK(lb >= 0.9);
  CHECK_THROWS_WITH(tsne(x, 3, 10, o), Catch::Contains("at least 4"));
}

TEST_CASE("analysis top patches: the planted patch comes first", "[analysis]") {
  Network net(random_weights(Arch::VGG16, 1), Device::CPU);
  const std::string tap = "relu2_1";
  const int ch = planted_channel(net, tap);
  TempDir dir;
  for (int i = 0; i < 5; ++i) {
    auto v = random_vector(size_t(3) * kSide * kSide, 40 + i, 0.47f, 0.53f);
    save_png(Tensor::from_vector({1, 3, kSide, kSide}, v).view(),
             dir.file("img" + std::to_string(i) + ".png"));
  }
  save_png(planted_image().view(), dir.file("img3_planted.png"));
  test::write_bytes(dir.file("notes.txt"), "not an image");
  const auto files = list_images(dir.path().string());
  REQUIRE(files.size() == 7);
  std::vector<std::string> skipped;
  const auto top = top_patches(net, files, tap, ch, kSide, 3, &skipped);
  REQUIRE(top.size() == 3);
  CHECK(files[top[0].image].find("planted") != std::string::npos);
  CHECK(top[0].activation > top[1].activation);
  CHECK(top[0].size == 10);
  // Its receptive field overlaps the planted square.
  CHECK(top[0].y0 < kPy + kPatch);
  CHECK(top[0].y0 + top[0].size > kPy);
  CHECK(top[0].x0 < kPx + kPatch);
  CHECK(top[0].x0 + top[0].size > kPx);
  REQUIRE(skipped.size() == 1);
  CHECK(skipped[0].find("notes.txt") != std::string::npos);
  const Tensor crop = crop_patch(planted_image(), top[0]);
  CHECK(crop.shape() == Shape{1, 3, 10, 10});
  CHECK_THROWS_WITH(top_patches(net, files, tap, 999, kSide, 3), Catch::Contains("--channel 999"));
}

TEST_CASE("analysis receptive fields of VGG taps", "[analysis]") {
  Network net(random_weights(Arch::VGG16, 0), Device::CPU);
  const auto rf = [&](const char* t) {
    const ReceptiveField r = receptive_field(net, t);
    return std::vector<int>{r.size, r.stride, r.offset};
  };
  CHECK(rf("conv1_1") == std::vector<int>{3, 1, -1});
  CHECK(rf("relu1_2") == std::vector<int>{5, 1, -2});
  CHECK(rf("pool1") == std::vector<int>{6, 2, -2});
  CHECK(rf("relu2_1") == std::vector<int>{10, 2, -4});
  CHECK(rf("pool2") == std::vector<int>{16, 4, -6});
  CHECK(rf("relu3_1") == std::vector<int>{24, 4, -10});
  CHECK_THROWS_WITH(receptive_field(net, "relu9_9"), Catch::Contains("unknown layer"));
}

TEST_CASE("analysis features: batched extraction, round trip, neighbours, bad files",
          "[analysis]") {
  Network net(random_weights(Arch::VGG16, 0), Device::CPU);
  TempDir dir;
  for (int i = 0; i < 5; ++i)
    save_png(tinted(i % 2, 300 + i, 20 + 3 * i).view(), dir.file("t" + std::to_string(i) + ".png"));
  test::write_bytes(dir.file("broken.png"), "\x89PNG garbage");
  const auto files = list_images(dir.path().string());
  int calls = 0;
  FeatureSet f = extract_features(net, files, "relu1_2", 24, 2, [&](int, int) { ++calls; });
  CHECK(calls >= 2);
  REQUIRE(f.count() == 5);
  CHECK(f.dim == 64);
  REQUIRE(f.skipped.size() == 1);
  CHECK(f.skipped[0].find("broken.png") != std::string::npos);
  // Batched features equal one-image features.
  const auto one = image_features(net, load_image(f.paths[3]), "relu1_2", 24);
  CHECK(test::max_rel_error(one, std::vector<float>(f.features.begin() + 3 * 64,
                                                    f.features.begin() + 4 * 64)) < 1e-5);
  const std::string h5 = dir.file("feats.h5");
  save_features(f, h5);
  const FeatureSet g = load_features(h5);
  CHECK(g.paths == f.paths);
  CHECK(g.features == f.features);
  CHECK(g.tap == "relu1_2");
  CHECK(g.size == 24);
  CHECK(g.weights == "random:0");
  // The query itself is its own nearest neighbour, at distance ~0, by either metric.
  for (bool cosine : {true, false}) {
    const auto nn = nearest_neighbors(g, one, 3, cosine);
    REQUIRE(nn.size() == 3);
    CHECK(nn[0].index == 3);
    CHECK(nn[0].distance < 1e-4);
    CHECK(nn[1].distance <= nn[2].distance);
  }
  CHECK_THROWS_WITH(nearest_neighbors(g, std::vector<float>(10), 3, true),
                    Catch::Contains("10 features"));
  // Mismatched files: paths count differs from the rows.
  {
    h5::File w = h5::File::create(dir.file("bad.h5"), "test");
    w.write("/features", f.features.data(), {5, 64});
    w.write_strings("/paths", {"a", "b"});
    for (const char* a : {"layer", "weights", "arch", "pool"}) w.write_attr_string("/", a, "x");
    w.write_attr_string("/", "format", "preimage-features 1");
    w.write_attr_int64s("/", "size", {24});
    w.close();
  }
  CHECK_THROWS_WITH(load_features(dir.file("bad.h5")),
                    Catch::Contains("bad.h5") && Catch::Contains("'/paths' has 2 entries"));
  save_head(LinearHead{"relu1_2", 2, 64, std::vector<float>(128, 0.f), {0.f, 0.f}},
            dir.file("head.h5"));
  CHECK_THROWS_WITH(load_features(dir.file("head.h5")), Catch::Contains("attribute 'format'"));
  CHECK_THROWS_WITH(load_features(dir.file("missing.h5")), Catch::Contains("no such file"));
  // No partial output: a failed save leaves nothing behind.
  FeatureSet empty;
  CHECK_THROWS(save_features(empty, dir.file("empty.h5")));
  CHECK_FALSE(std::filesystem::exists(dir.file("empty.h5")));
}

TEST_CASE("analysis bad input: empty directory, unknown layer, channel, head", "[analysis]") {
  Network net(random_weights(Arch::VGG16, 0), Device::CPU);
  TempDir dir;
  CHECK_THROWS_WITH(list_images(dir.path().string()), Catch::Contains("holds no image files"));
  CHECK_THROWS_WITH(list_images(dir.file("nope")), Catch::Contains("does not exist"));
  test::write_bytes(dir.file("a.png"), "junk");
  CHECK_THROWS_WITH(extract_features(net, list_images(dir.path().string()), "relu1_1", 16),
                    Catch::Contains("no readable image"));
  const Shape is{1, 3, 32, 32};
  Target t;
  t.tap = "relu9_9";
  t.channel = 0;
  CHECK_THROWS_WITH(check_target(net, t, is), Catch::Contains("unknown layer 'relu9_9'"));
  t.tap = "relu2_1";
  t.channel = 128;
  CHECK_THROWS_WITH(check_target(net, t, is), Catch::Contains("--channel 128 out of range") &&
                                                  Catch::Contains("128 channels"));
  t.channel = 1;
  t.y = 40;
  t.x = 0;
  CHECK_THROWS_WITH(check_target(net, t, is), Catch::Contains("--neuron 40,0"));
  Target c;
  c.tap = "relu2_1";
  c.class_index = 3;
  CHECK_THROWS_WITH(check_target(net, c, is), Catch::Contains("--head"));
  LinearHead h{"relu2_1", 2, 64, std::vector<float>(128, 0.f), {0.f, 0.f}};
  c.head = &h;
  CHECK_THROWS_WITH(check_target(net, c, is), Catch::Contains("expects 64 features"));
  h.dim = 128;
  h.w.assign(256, 0.f);
  CHECK_THROWS_WITH(check_target(net, c, is), Catch::Contains("--class 3 out of range"));
  c.class_index = 1;
  CHECK_NOTHROW(check_target(net, c, is));
  // Head files: round trip and errors naming the file.
  h.names = {"red", "blue"};
  h.w[7] = 0.25f;
  h.b[1] = -1.5f;
  save_head(h, dir.file("h.h5"));
  const LinearHead r = load_head(dir.file("h.h5"));
  CHECK(r.tap == "relu2_1");
  CHECK(r.classes == 2);
  CHECK(r.dim == 128);
  CHECK(r.w == h.w);
  CHECK(r.b == h.b);
  CHECK(r.names == h.names);
  c.head = &r;
  CHECK(c.describe() == "class 1 (blue) of a head on relu2_1");
  h.names = {"one"};
  CHECK_THROWS_WITH(save_head(h, dir.file("h2.h5")), Catch::Contains("one name per class"));
  CHECK_FALSE(std::filesystem::exists(dir.file("h2.h5")));
  CHECK_THROWS_WITH(load_head(dir.file("a.png")), Catch::Contains("a.png"));
}

TEST_CASE("analysis image composition: heat maps, grids, image maps, filters", "[analysis]") {
  std::vector<float> mv(6 * 5);
  for (size_t i = 0; i < mv.size(); ++i) mv[i] = float(i);
  const Tensor m = Tensor::from_vector({1, 1, 6, 5}, mv);
  const auto c = colorize(m).to_vector();
  CHECK(c[0] == 0.f);                    // black at 0
  CHECK(c[29] == 1.f);                   // red channel saturated at the max
  CHECK(c[2 * 30 + 29] == Approx(1.f));  // white at the max
  const Tensor img = Tensor::full({1, 3, 6, 5}, 0.2f);
  const auto o = overlay(img, m, 0.5f).to_vector();
  CHECK(o[0] == Approx(0.1f));
  CHECK_THROWS(overlay(Tensor::full({1, 3, 7, 5}, 0.f), m));
  std::vector<Tensor> tiles;
  for (int i = 0; i < 5; ++i) tiles.push_back(Tensor::full({1, 3, 9, 7}, 0.1f * i));
  const Tensor g = tile_grid(tiles, 3, 10);
  CHECK(g.shape() == Shape{1, 3, 2 * 12 + 2, 3 * 12 + 2});
  const Tensor im = image_map(tiles, {0, 0, 1, 1, 2, 0, 0, 2, 1, 0}, 64, 8);
  CHECK(im.shape() == Shape{1, 3, 64, 64});
  const auto iv = im.to_vector();
  CHECK(iv[0] == Approx(0.f));             // tile 0 at the top-left corner
  CHECK(iv[size_t(63) * 64 + 63] == 1.f);  // background
  Weights w = random_weights(Arch::VGG16, 0);
  const Tensor f = filter_grid(w.layers.at("conv1_1").weight, 6);
  CHECK(f.shape() == Shape{1, 3, 8 * 8 + 2, 8 * 8 + 2});
  const auto fv = f.to_vector();
  CHECK(*std::min_element(fv.begin(), fv.end()) >= 0.f);
  CHECK(*std::max_element(fv.begin(), fv.end()) <= 1.f);
  CHECK_THROWS_WITH(filter_grid(w.layers.at("conv1_2").weight), Catch::Contains("conv1_1"));
}

TEST_CASE("analysis on the CUDA backend (simulator) matches the CPU", "[analysis][cuda]") {
  const Shape is{1, 3, 19, 23};
  Tensor x = Tensor::from_vector(is, random_vector(is.numel(), 21, 0.f, 1.f));
  Network cpu(random_weights(Arch::VGG16, 4), Device::CPU);
  Network gpu(random_weights(Arch::VGG16, 4), Device::CUDA);
  Target t;
  t.tap = "relu1_2";
  t.channel = 2;
  Tensor xg = x.to(Device::CUDA);
  for (bool guided : {false, true}) {
    const Tensor a = saliency_gradient(cpu, x.view(), t, guided);
    const Tensor b = saliency_gradient(gpu, xg.view(), t, guided);
    CHECK(test::max_rel_error(b.to_vector(), a.to_vector()) < 1e-4);
  }
  const Tensor oa = saliency_occlusion(cpu, x.view(), t, 7, 6, 3);
  const Tensor ob = saliency_occlusion(gpu, xg.view(), t, 7, 6, 3);
  CHECK(test::max_rel_error(ob.to_vector(), oa.to_vector()) < 1e-4);
  AttackOptions o;
  o.steps = 3;
  const AttackResult ra = attack(cpu, x.view(), t, o), rb = attack(gpu, xg.view(), t, o);
  CHECK(rb.score_after == Approx(ra.score_after).epsilon(1e-3));
  CHECK(rb.image.device() == Device::CPU);
}
