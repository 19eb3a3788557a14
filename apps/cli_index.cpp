// preimage index build|add|info|verify and preimage search: a texture similarity index over an
// image collection (preimage/texture_index.h) on the command line.
//
//   preimage index build DIR|IMG… --out idx.h5 [--index-type exact|ivfpq|hnsw] [--dim 128]
//                        [--layers pool1,pool2] [--weights random:0]
//                        [--arch vgg19] [--size 256] [--crop 1] [--half] [--batch 8]
//                        [--device auto] [--quiet]
//   preimage index add idx.h5 DIR|IMG… [--batch 8] [--device auto] [--quiet]
//   preimage index info idx.h5 [--json]
//   preimage index verify idx.h5 [--json]
//   preimage search idx.h5 QUERY|DIR… [-k 10] [--json] [--sheet out.png] [--crop F]
//                   [--layers L] [--weights W] [--device auto] [--quiet]
#include "cli_index.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli_options.h"
#include "cli_progress.h"
#include "engine/core/strings.h"
#include "json.h"
#include "preimage/approx_index.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/texture_index.h"

namespace preimage::cli {
namespace {

using IndexArgs = FlagArgs;

// index build|add|info|verify and search: usage, summary and flags.
const CommandSpec& index_spec(const std::string& command) {
  static const std::vector<Flag> kBuild = {
      {"out", "FILE.h5", "the index (approximate types: also a directory FILE.h5.d)", "required"},
      {"layers", "L,...", "layers whose Gram matrices describe a texture", "pool1,pool2"},
      {"size", "N", "images are resized so that the long side is N", "256"},
      {"crop", "F", "centre crop of each image, a fraction in (0, 1]", "1"},
      {"half", "", "store the Gram vectors as float16 (exact index)", "off"},
      {"index-type", "exact|ivfpq|hnsw",
       "exact scan, or FAISS over compact descriptors (docs/scaling.md)", "exact"},
      {"dim", "D", "compact descriptor size (ivfpq, hnsw)", "128"},
  };
  static const std::map<std::string, CommandSpec> specs = {
      {"index build",
       {"index build DIR|IMAGE... --out idx.h5 [options]",
        "texture index of an image collection (Gram statistics)",
        FlagSet({"weights", "arch", "device", "quiet", "batch"}, kBuild)}},
      {"index add",
       {"index add idx.h5 DIR|IMAGE... [options]",
        "append images to an index (append-only for ivfpq/hnsw)",
        FlagSet({"device", "quiet", "batch"},
                {{"layers", "L,...", "must match the index's layers", "the index's"}})}},
      {"index info",
       {"index info idx.h5 [options]", "type, settings, entries and size",
        FlagSet({}, {{"json", "", "print the summary as JSON on stdout", "off"}})}},
      {"index verify",
       {"index verify idx.h5 [options]", "check every entry and checksum",
        FlagSet({}, {{"json", "", "print the verification as JSON on stdout", "off"}})}},
      {"search",
       {"search idx.h5 QUERY|DIR... [options]", "nearest textures of each query",
        FlagSet(
            {"device", "quiet"},
            {{"k", "K", "results per query", "10"},
             {"json", "", "print the results as JSON on stdout", "off"},
             {"sheet", "FILE.png", "a contact sheet of the results", "none"},
             {"crop", "F", "centre crop of each query, a fraction in (0, 1]", "the index's"},
             {"layers", "L,...", "must match the index's layers", "the index's"},
             {"weights", "FILE|random:SEED", "must match the index's weights", "the index's"}})}},
  };
  return specs.at(command);
}

std::vector<std::string> split_list(const std::string& s, const std::string& flag) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    if (q > p) out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  require(!out.empty(), "--" + flag + ": expected a comma-separated list of layers");
  return out;
}

// A file's weights identity without its path ("FILE (sha256 X)" → "(sha256 X)").
std::string fingerprint(const std::string& identity) {
  const auto p = identity.rfind("(sha256 ");
  return p == std::string::npos ? identity : identity.substr(p);
}

void check_layers(const TextureIndexSettings& s, const std::string& index,
                  const std::vector<std::string>& layers) {
  if (layers != s.layers)
    throw Error("--layers " + join(layers) + " does not match index '" + index +
                "', which holds layers " + join(s.layers) +
                " (search uses the index's layers; rebuild the index for others)");
}

// What info/search print of either kind of index.
struct IndexView {
  std::string path;
  IndexType type = IndexType::Exact;
  const TextureIndexSettings* settings = nullptr;
  const std::vector<TextureEntry>* entries = nullptr;
  std::vector<int> segments;
  int full_dim = 0, compact_dim = 0;
  size_t segment_files = 0, bytes = 0;
  size_t size() const { return entries->size(); }
};

IndexView view_of(const TextureIndex& i) {
  IndexView v;
  v.path = i.path();
  v.settings = &i.settings();
  v.entries = &i.entries();
  v.segments = i.segments();
  v.full_dim = i.dim();
  std::error_code ec;
  v.bytes = size_t(std::filesystem::file_size(i.path(), ec));
  return v;
}

IndexView view_of(const ApproxTextureIndex& i) {
  IndexView v;
  v.path = i.path();
  v.type = i.type();
  v.settings = &i.settings();
  v.entries = &i.entries();
  v.segments = i.segments();
  v.full_dim = i.segments().back();
  v.compact_dim = i.dim();
  v.segment_files = i.segment_count();
  v.bytes = i.bytes_on_disk();
  return v;
}

IndexUpdateOptions update_options(const IndexArgs& a, ProgressPrinter& bar) {
  IndexUpdateOptions o;
  o.batch = int(a.integer("batch", 1, 4096));
  o.progress = [&bar](size_t d, size_t t, const std::string&) { bar.update(d, t); };
  if (const char* d = std::getenv("PREIMAGE_TEST_INDEX_WRITE_DELAY_MS"))
    o.write_delay_ms = std::atoi(d);
  return o;
}

std::vector<std::string> expand(const std::vector<std::string>& args, size_t first) {
  std::vector<std::string> out;
  for (size_t i = first; i < args.size(); ++i) {
    auto v = image_files_under(args[i]);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

int report_update(const IndexUpdateReport& r, const std::string& index, double seconds,
                  bool quiet) {
  if (!quiet) {
    const size_t n = r.added + r.replaced;
    std::printf("%s: %zu entries (%zu added, %zu replaced, %zu unchanged); %.2f s, %.1f images/s\n",
                index.c_str(), r.total, r.added, r.replaced, r.unchanged, seconds,
                r.extract_seconds > 0 ? n / r.extract_seconds : 0.0);
  }
  if (!r.skipped.empty()) {
    std::fprintf(stderr, "skipped %zu unreadable image(s):\n", r.skipped.size());
    for (const auto& [p, why] : r.skipped)
      std::fprintf(stderr, "  %s: %s\n", p.c_str(), why.c_str());
  }
  return 0;
}

int cmd_build(const IndexArgs& a) {
  require(!a.positional.empty(),
          "index build: expected DIR or images (usage: preimage index build "
          "DIR --out idx.h5)");
  a.required("out");
  TextureIndexSettings s;
  if (a.given("layers")) s.layers = split_list(a.text("layers"), "layers");
  s.weights = a.text("weights");
  s.arch = a.text("arch");
  s.size = int(a.integer("size", 16, 16384));
  s.crop = float(a.number("crop", 1e-6, 1));
  s.half = a.on("half");
  const Device dev = resolve_device(a.text("device"));
  const auto images = expand(a.positional, 0);
  require(!images.empty(), "index build: no images (png, jpg, jpeg, bmp, tga, gif, ppm, pgm) in " +
                               join(a.positional));
  const bool quiet = a.on("quiet");
  ProgressPrinter bar(quiet, "indexing", "images", "img");
  const auto t0 = std::chrono::steady_clock::now();
  IndexUpdateOptions o = update_options(a, bar);
  const std::string out = a.text("out");
  const IndexType type = parse_index_type(a.text("index-type"));
  IndexUpdateReport r;
  if (type == IndexType::Exact) {
    require(!a.given("dim"), "--dim: applies to --index-type ivfpq or hnsw only");
    r = build_texture_index(images, s, out, dev, o);
  } else {
    require(!s.half,
            "--half: applies to --index-type exact only (approximate indexes store "
            "compact descriptors instead)");
    ApproxIndexParams p;
    p.dim = int(a.integer("dim", 2, 4096));
    r = build_approx_texture_index(images, s, type, p, out, dev, o);
  }
  bar.finish();
  return report_update(
      r, out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), quiet);
}

int cmd_add(const IndexArgs& a) {
  require(a.positional.size() >= 2, "index add: expected INDEX and DIR or images");
  const std::string index = a.positional[0];
  const IndexType type = texture_index_type(index);
  if (a.given("layers")) {
    const auto want = split_list(a.text("layers"), "layers");
    if (type == IndexType::Exact)
      TextureIndex::open(index).check_layers(want);
    else
      check_layers(ApproxTextureIndex::open(index).settings(), index, want);
  }
  const Device dev = resolve_device(a.text("device"));
  const auto images = expand(a.positional, 1);
  const bool quiet = a.on("quiet");
  ProgressPrinter bar(quiet, "adding", "images", "img");
  const auto t0 = std::chrono::steady_clock::now();
  IndexUpdateOptions o = update_options(a, bar);
  IndexUpdateReport r = type == IndexType::Exact
                            ? add_to_texture_index(index, images, dev, o)
                            : add_to_approx_texture_index(index, images, dev, o);
  bar.finish();
  return report_update(r, index,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                       quiet);
}

void settings_json(Json& j, const IndexView& idx) {
  const auto& s = *idx.settings;
  j.value("index", idx.path);
  j.value("index_type", index_type_name(idx.type));
  j.value("entries", idx.size());
  j.begin_array("layers");
  for (const auto& l : s.layers) j.value("", l);
  j.end_array();
  j.begin_array("channels");
  for (int c : s.channels) j.value("", c);
  j.end_array();
  j.value("dim", idx.full_dim);
  if (idx.type != IndexType::Exact) {
    j.value("compact_dim", idx.compact_dim);
    j.value("segment_files", idx.segment_files);
  }
  j.value("bytes", idx.bytes);
  j.value("dtype", idx.type != IndexType::Exact ? "compact" : s.half ? "float16" : "float32");
  j.value("weights", s.weights);
  j.value("weights_identity", s.weights_identity);
  j.value("arch", s.arch);
  j.value("size", s.size);
  j.value("crop", double(s.crop));
}

int cmd_info(const IndexArgs& a) {
  require(a.positional.size() == 1, "index info: expected one INDEX");
  const std::string path = a.positional[0];
  const IndexType type = texture_index_type(path);
  TextureIndex exact;
  ApproxTextureIndex approx;
  if (type == IndexType::Exact)
    exact = TextureIndex::open(path);
  else
    approx = ApproxTextureIndex::open(path);
  const IndexView idx = type == IndexType::Exact ? view_of(exact) : view_of(approx);
  const auto& s = *idx.settings;
  if (a.on("json")) {
    Json j;
    j.begin_object();
    settings_json(j, idx);
    j.end_object();
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  std::printf("index:     %s (%s)\n", idx.path.c_str(), index_type_name(type));
  std::printf("entries:   %zu\n", idx.size());
  std::string ch;
  for (size_t i = 0; i < s.layers.size(); ++i)
    ch += (i ? ", " : "") + s.layers[i] + " (" + std::to_string(s.channels[i]) + " channels)";
  if (type == IndexType::Exact)
    std::printf("layers:    %s; %d values per entry (%s)\n", ch.c_str(), idx.full_dim,
                s.half ? "float16" : "float32");
  else
    std::printf(
        "layers:    %s; Gram vectors of %d values, compact descriptors of %d (%zu "
        "segment files)\n",
        ch.c_str(), idx.full_dim, idx.compact_dim, idx.segment_files);
  std::printf("weights:   %s (%s)\n", s.weights_identity.c_str(), s.arch.c_str());
  std::printf("preprocess: long side %d, centre crop %g\n", s.size, double(s.crop));
  std::printf("on disk:   %.1f MiB (%.0f bytes per entry)\n", double(idx.bytes) / (1 << 20),
              idx.size() ? double(idx.bytes) / double(idx.size()) : 0.0);
  return 0;
}

int cmd_verify(const IndexArgs& a) {
  require(a.positional.size() == 1, "index verify: expected one INDEX");
  const std::string path = a.positional[0];
  const IndexType type = texture_index_type(path);
  TextureIndex exact;
  ApproxTextureIndex approx;
  std::vector<std::string> problems;
  if (type == IndexType::Exact) {
    exact = TextureIndex::open(path);
    problems = exact.verify();
  } else {
    approx = ApproxTextureIndex::open(path);
    problems = approx.verify();
  }
  const IndexView idx = type == IndexType::Exact ? view_of(exact) : view_of(approx);
  if (a.on("json")) {
    Json j;
    j.begin_object();
    j.value("index", idx.path);
    j.value("entries", idx.size());
    j.value("ok", problems.empty());
    j.begin_array("problems");
    for (const auto& p : problems) j.value("", p);
    j.end_array();
    j.end_object();
    std::printf("%s\n", j.str().c_str());
  } else if (problems.empty()) {
    std::printf("%s: ok (%zu entries, every checksum and norm holds)\n", idx.path.c_str(),
                idx.size());
  } else {
    for (const auto& p : problems) std::fprintf(stderr, "%s: %s\n", idx.path.c_str(), p.c_str());
  }
  if (!problems.empty()) {
    std::fprintf(stderr, "preimage: error: index '%s' fails verification: %zu problem(s)\n",
                 idx.path.c_str(), problems.size());
    return 1;
  }
  return 0;
}

// One contact-sheet tile: the image fitted into tile×tile, centred on grey.
void paste_tile(const std::string& path, int tile, std::vector<float>& sheet, int sh, int sw,
                int y0, int x0) {
  Tensor img;
  try {
    img = load_image(path);
  } catch (const Error&) {
    return;  // moved or deleted since indexing: the tile stays grey
  }
  const int h = img.shape().h, w = img.shape().w;
  const int th = h >= w ? tile : std::max(1, int(std::lround(double(h) * tile / w)));
  const int tw = h >= w ? std::max(1, int(std::lround(double(w) * tile / h))) : tile;
  const std::vector<float> v = resize(img.view(), th, tw).to_vector();
  const int oy = y0 + (tile - th) / 2, ox = x0 + (tile - tw) / 2;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < th; ++y)
      for (int x = 0; x < tw; ++x)
        sheet[(size_t(c) * sh + oy + y) * sw + ox + x] = v[(size_t(c) * th + y) * tw + x];
}

void write_sheet(const std::string& out, const std::vector<std::string>& queries,
                 const std::vector<std::vector<SearchHit>>& hits, const IndexView& idx, int k) {
  constexpr int tile = 128, gap = 4, sep = 16;
  const int cols = 1 + k;
  const int sw = gap + tile + sep + k * (tile + gap), sh = gap + int(queries.size()) * (tile + gap);
  std::vector<float> sheet(size_t(3) * sh * sw, 0.15f);
  for (size_t q = 0; q < queries.size(); ++q) {
    const int y0 = gap + int(q) * (tile + gap);
    paste_tile(queries[q], tile, sheet, sh, sw, y0, gap);
    for (size_t r = 0; r < hits[q].size() && int(r) < cols - 1; ++r)
      paste_tile((*idx.entries)[hits[q][r].entry].path, tile, sheet, sh, sw, y0,
                 gap + tile + sep + int(r) * (tile + gap));
  }
  Tensor t = Tensor::from_vector({1, 3, sh, sw}, sheet);
  save_png(t.view(), out);
}

int cmd_search(const IndexArgs& a) {
  require(a.positional.size() >= 2,
          "search: expected INDEX and one or more QUERY images or "
          "directories (usage: preimage search idx.h5 q.png -k 10)");
  const std::string path = a.positional[0];
  const IndexType type = texture_index_type(path);
  TextureIndex exact;
  ApproxTextureIndex approx;
  if (type == IndexType::Exact)
    exact = TextureIndex::open(path);
  else
    approx = ApproxTextureIndex::open(path);
  const IndexView idx = type == IndexType::Exact ? view_of(exact) : view_of(approx);
  if (a.given("layers")) check_layers(*idx.settings, path, split_list(a.text("layers"), "layers"));
  const int k = int(a.integer("k", 1, 1 << 20));
  const float crop = a.given("crop") ? float(a.number("crop", 1e-6, 1)) : -1.f;
  if (a.given("sheet")) {
    const std::string sheet = a.text("sheet");
    require(sheet.size() > 4 && sheet.substr(sheet.size() - 4) == ".png",
            "--sheet: expected a .png file name, got '" + sheet + "'");
  }
  require(idx.size() > 0, "index '" + idx.path + "' holds no entries");
  const Device dev = resolve_device(a.text("device"));
  TextureIndexSettings s = *idx.settings;
  if (a.given("weights")) s.weights = a.text("weights");
  const auto queries = expand(a.positional, 1);
  require(!queries.empty(),
          "search: no query images in " +
              join(std::vector<std::string>(a.positional.begin() + 1, a.positional.end())));
  TextureFeatures feat(s, dev);
  require(fingerprint(feat.settings().weights_identity) == fingerprint(s.weights_identity),
          "weights " + feat.settings().weights_identity + " differ from the index's " +
              s.weights_identity + " (index '" + idx.path + "')");
  require(feat.segments() == idx.segments,
          "index '" + idx.path + "': its layer sizes differ from the network's");

  const int D = idx.full_dim;
  std::vector<std::string> ok;
  std::vector<std::pair<std::string, std::string>> failed;
  std::vector<float> qv;
  // Queries of one preprocessed shape are extracted in batches of 8; a batch that fails is
  // redone image by image so that only the bad query is reported.
  std::vector<std::pair<std::string, Tensor>> pending;
  auto flush = [&] {
    if (pending.empty()) return;
    std::vector<float> v(pending.size() * size_t(D));
    auto keep = [&](const std::string& q, const float* row) {
      qv.insert(qv.end(), row, row + D);
      ok.push_back(q);
    };
    try {
      std::vector<const Tensor*> imgs;
      for (const auto& p : pending) imgs.push_back(&p.second);
      feat.compute(imgs, v.data());
      for (size_t i = 0; i < pending.size(); ++i) keep(pending[i].first, v.data() + i * D);
    } catch (const Error&) {
      for (const auto& p : pending) {
        try {
          std::vector<const Tensor*> one{&p.second};
          feat.compute(one, v.data());
          keep(p.first, v.data());
        } catch (const Error& e) {
          failed.emplace_back(p.first, e.what());
        }
      }
    }
    pending.clear();
  };
  for (const auto& q : queries) {
    try {
      Tensor img = feat.load(q, crop);
      if (!pending.empty() && (pending[0].second.shape() != img.shape() || pending.size() >= 8))
        flush();
      pending.emplace_back(q, std::move(img));
    } catch (const Error& e) {
      failed.emplace_back(q, e.what());
    }
  }
  flush();
  std::vector<std::vector<SearchHit>> hits;
  auto t0 = std::chrono::steady_clock::now();
  if (type == IndexType::Exact) {
    TextureSearcher searcher(exact, dev);
    t0 = std::chrono::steady_clock::now();
    hits = searcher.search(qv.data(), int(ok.size()), k);
  } else {
    std::vector<float> cq(ok.size() * size_t(approx.dim()));
    approx.projection().apply(qv.data(), ok.size(), cq.data());
    hits = approx.search(cq.data(), int(ok.size()), k);
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  if (a.on("json")) {
    Json j;
    j.begin_object();
    settings_json(j, idx);
    j.value("k", k);
    j.value("query_crop", a.given("crop") ? a.number("crop", 1e-6, 1) : double(s.crop));
    j.value("device", device_name(dev));
    j.value("search_ms", ms);
    j.begin_array("queries");
    for (size_t q = 0; q < ok.size(); ++q) {
      j.begin_object();
      j.value("query", ok[q]);
      j.begin_array("results");
      for (size_t r = 0; r < hits[q].size(); ++r) {
        j.begin_object();
        j.value("rank", r + 1);
        j.value("path", (*idx.entries)[hits[q][r].entry].path);
        j.value("distance", double(hits[q][r].distance));
        j.end_object();
      }
      j.end_array();
      j.end_object();
    }
    j.end_array();
    j.begin_array("failed");
    for (const auto& [p, why] : failed) {
      j.begin_object();
      j.value("query", p);
      j.value("error", why);
      j.end_object();
    }
    j.end_array();
    j.end_object();
    std::printf("%s\n", j.str().c_str());
  } else {
    for (size_t q = 0; q < ok.size(); ++q) {
      std::printf("%squery: %s\n", q ? "\n" : "", ok[q].c_str());
      std::printf("%5s  %10s  %s\n", "rank", "distance", "path");
      for (size_t r = 0; r < hits[q].size(); ++r)
        std::printf("%5zu  %10.6f  %s\n", r + 1, double(hits[q][r].distance),
                    (*idx.entries)[hits[q][r].entry].path.c_str());
    }
    if (!a.on("quiet"))
      std::fprintf(stderr, "searched %zu entries for %zu queries on %s in %.2f ms\n", idx.size(),
                   ok.size(), device_name(dev), ms);
  }
  if (a.given("sheet") && !ok.empty()) {
    write_sheet(a.text("sheet"), ok, hits, idx, k);
    if (!a.on("quiet")) std::fprintf(stderr, "contact sheet: %s\n", a.text("sheet").c_str());
  }
  if (!failed.empty()) {
    for (const auto& [p, why] : failed)
      std::fprintf(stderr, "preimage: error: query '%s': %s\n", p.c_str(), why.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

const char* index_usage() {
  return "  index build DIR --out idx.h5 [--index-type exact|ivfpq|hnsw] [--dim 128]\n"
         "              [--layers pool1,pool2] [--half] [--size N] [--crop F]\n"
         "              texture index of an image collection (also: index add|info|verify "
         "idx.h5 ...)\n"
         "  search      idx.h5 QUERY|DIR... [-k 10] [--json] [--sheet out.png] [--crop F]: "
         "nearest textures\n";
}

std::string index_help(const std::string& command) {
  return index_spec(command).help();
}

int run_index_command(int argc, char** argv) {
  const std::string cmd = argv[1];
  if (cmd == "search")
    return cmd_search(parse_flags("search", argc, argv, 2, index_spec("search").flags));
  require(argc >= 3, "index: expected a subcommand: build, add, info or verify");
  const std::string sub = argv[2];
  const std::string what = "index " + sub;
  if (sub != "build" && sub != "add" && sub != "info" && sub != "verify")
    throw Error("index: unknown subcommand '" + sub + "' (expected build, add, info or verify)");
  const FlagArgs a = parse_flags(what, argc, argv, 3, index_spec(what).flags);
  if (sub == "build") return cmd_build(a);
  if (sub == "add") return cmd_add(a);
  if (sub == "info") return cmd_info(a);
  return cmd_verify(a);
}

}  // namespace preimage::cli
