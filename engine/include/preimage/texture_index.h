// Texture similarity index: every image of a collection as its Frobenius-normalized Gram matrices
// at a few taps (default pool1, pool2), stored in one HDF5 file, and exact batched search.
//
// Distance (the fashion seed's d_L):  d(T1, T2) = Σ_l ‖Ĝ_l(T1) − Ĝ_l(T2)‖_F,  Ĝ = G / ‖G‖_F.
// Each Ĝ_l (C×C, symmetric) is stored as its upper triangle, row-major, with the off-diagonal
// entries multiplied by √2, so the stored vector v has ‖v‖ = ‖Ĝ‖_F = 1 and ⟨v1, v2⟩ = ⟨Ĝ1, Ĝ2⟩_F:
// ‖Ĝ1 − Ĝ2‖_F² = 2 − 2⟨v1, v2⟩ exactly, and search is a matrix product per layer segment
// (Backend::search_distances: engine/cpu/search.cpp, kernels/search.cu).
//
// File layout (format "preimage-texture-index" version 1; docs/scaling.md):
//   attributes of /: format, format_version, layers, channels, segments (offsets), dtype
//     (float32 | float16), weights (the spec), weights_identity, arch, size, crop
//   /vectors       (N, D) float32 or IEEE half, chunked
//   /paths         (N) strings (absolute paths)
//   /image_size    (N, 2) int64 (height, width of the original image)
//   /image_sha256  (N) strings
//   /checksum      (N) strings: FNV-1a 64 (hex) of the entry (path, size, sha256, stored bytes)
// Crash safety: every change writes a complete new file under a temporary name and renames it
// over the old one (preimage/atomic_file.h), under an exclusive lock on "<index>.lock" taken
// without waiting (a second concurrent writer is refused with an Error naming the lock); readers
// see the old or the new index, never a partial one. This is the exact index (the reference);
// preimage/approx_index.h has the FAISS types with append-only adds.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "preimage/device.h"
#include "preimage/tensor.h"

namespace preimage {

struct TextureIndexSettings {
  std::vector<std::string> layers = {"pool1", "pool2"};
  std::string weights = "random:0";  // spec: random:SEED or an .h5 file
  std::string arch = "vgg19";
  int size = 256;     // images are resized so that their long side is `size`
  float crop = 1.f;   // centre crop (fraction of each side) before resizing
  bool half = false;  // store float16 vectors
  // Filled in by the engine:
  std::string weights_identity;
  std::vector<int> channels;  // per layer
};

struct TextureEntry {
  std::string path;
  int height = 0, width = 0;  // of the original image
  std::string image_sha256;
  std::string checksum;  // 16 hex digits
};

// Length of one layer's stored vector: C(C+1)/2.
size_t gram_vector_length(int channels);
// Gram matrix g (C×C, row-major) → unit vector (upper triangle, off-diagonals ×√2, divided by
// ‖g‖_F). Returns ‖g‖_F (0: out is left zero).
double gram_to_unit_vector(const float* g, int channels, float* out);

// Feature extraction with an index's settings: weights, network (run only to the deepest layer),
// preprocessing.
class TextureFeatures {
 public:
  // Loads the weights and checks the layers (Error naming the layer when invalid).
  TextureFeatures(TextureIndexSettings settings, Device device);
  ~TextureFeatures();
  TextureFeatures(TextureFeatures&&) noexcept;
  TextureFeatures& operator=(TextureFeatures&&) noexcept;

  const TextureIndexSettings& settings() const;  // weights_identity and channels filled in
  Device device() const;
  int dim() const;
  const std::vector<int>& segments() const;  // layers + 1 offsets, from 0 to dim()

  // Loads an image file and preprocesses it as the index does (crop < 0: the settings' crop):
  // host (1,3,h,w). Throws Error naming the file.
  Tensor load(const std::string& path, float crop = -1.f) const;
  // The same preprocessing (centre crop, resize) of an image already loaded: host (1,3,H,W).
  Tensor preprocess(Tensor image, float crop = -1.f) const;
  // Vectors of images (host (1,3,h,w) each, all of one shape) into out (images.size() × dim()).
  // Throws Error naming the layer when an image's Gram matrix is zero there.
  void compute(const std::vector<const Tensor*>& images, float* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class TextureIndex {
 public:
  // Reads the whole index. Errors name the file and what is wrong ("not an HDF5 file or
  // truncated", "not a preimage texture index", missing/mis-shaped datasets, ...).
  static TextureIndex open(const std::string& path);

  const std::string& path() const { return path_; }
  const TextureIndexSettings& settings() const { return settings_; }
  const std::vector<TextureEntry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  int dim() const { return segments_.back(); }
  const std::vector<int>& segments() const { return segments_; }
  const std::vector<float>& vectors() const { return vectors_; }  // size() × dim(), float32

  // Every problem found: checksum mismatches (naming the entry), vectors that are not unit per
  // layer, inconsistent datasets. Empty when the index is sound.
  std::vector<std::string> verify() const;
  // Throws Error when `layers` (a request) differs from the index's layers.
  void check_layers(const std::vector<std::string>& layers) const;

 private:
  friend struct TextureIndexWriter;
  std::string path_;
  TextureIndexSettings settings_;
  std::vector<TextureEntry> entries_;
  std::vector<int> segments_{0};
  std::vector<float> vectors_;
  std::vector<unsigned char> stored_;  // the vectors' bytes as stored (checksums)
};

struct IndexUpdateOptions {
  int batch = 8;
  // Progress after each image: (images done, images to do, path).
  std::function<void(size_t, size_t, const std::string&)> progress;
  int write_delay_ms = 0;  // test hook: pause while writing the new file (crash tests)
};

struct IndexUpdateReport {
  size_t added = 0, replaced = 0, unchanged = 0, total = 0;
  std::vector<std::pair<std::string, std::string>> skipped;  // (path, reason)
  double extract_seconds = 0;
};

// Image files (png, jpg, jpeg, bmp, tga, gif, ppm, pgm; any case) under a directory, recursively,
// sorted. A path that is a file is returned as is.
std::vector<std::string> image_files_under(const std::string& dir_or_file);

// Builds a new index at `out` (atomically) from the images. Unreadable images are skipped and
// reported; no readable image at all is an Error.
IndexUpdateReport build_texture_index(const std::vector<std::string>& images,
                                      const TextureIndexSettings& settings, const std::string& out,
                                      Device device, const IndexUpdateOptions& options = {});
// Adds images to an existing index (same path and checksum: unchanged; same path, new contents:
// replaced). Writes a new file and renames it over the index.
IndexUpdateReport add_to_texture_index(const std::string& index,
                                       const std::vector<std::string>& images, Device device,
                                       const IndexUpdateOptions& options = {});

struct SearchHit {
  size_t entry = 0;
  float distance = 0;
};

// Exact search: the index's vectors on a device (copied once), queries in batches.
class TextureSearcher {
 public:
  TextureSearcher(const TextureIndex& index, Device device);
  ~TextureSearcher();
  TextureSearcher(TextureSearcher&&) noexcept;
  TextureSearcher& operator=(TextureSearcher&&) noexcept;
  // queries: nq × dim (host). Top k (ascending distance, ties by entry) per query.
  std::vector<std::vector<SearchHit>> search(const float* queries, int nq, int k);
  // The full distance matrix (nq × size) on the host.
  std::vector<float> distances(const float* queries, int nq);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Distance matrix through the device's backend (host in, host out): dist (nq × ne).
std::vector<float> texture_distances(Device device, const float* queries, int nq,
                                     const float* entries, int ne,
                                     const std::vector<int>& segments);

}  // namespace preimage
