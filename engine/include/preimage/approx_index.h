// Approximate texture search at catalogue scale (docs/scaling.md): compact Gram descriptors in
// a FAISS index (IVF-PQ or HNSW), stored as an append-only set of segment files.
//
// Compact descriptor of an image (CompactProjection): per layer l of the index, the unit Gram
// vector v_l (preimage/texture_index.h) → signed square root s = sign(v)·√|v| (renormalized;
// damps the few dominant Gram entries) → minus the mean, projected on d_l principal directions
// learned on the index's entries (randomized PCA) → normalized → scaled by 1/√L; the L parts
// concatenated (dim() values, 128 by default). Distance reported by search: Σ_l ‖p_l − q_l‖ of
// the normalized projected parts (the seed's Σ_l d_l, in the compact space), re-ranked exactly
// over rerank·k candidates of FAISS's L2 search (which ranks by Σ_l d_l²).
//
// On disk (format "preimage-texture-index" version 2), for an index "idx.h5":
//   idx.h5          the manifest (HDF5, a few KiB): settings, index_type, params, the base file
//                   and the list of segment files with their row counts and FNV-1a checksums of
//                   their FAISS blobs. Replaced atomically (temporary + fsync + rename) by every
//                   build and add: it is the commit record.
//   idx.h5.d/base-<id>.h5     immutable: the projection (mean, basis per layer) and, for
//                   ivfpq, the trained empty IVF-PQ (coarse centroids, PQ codebooks).
//   idx.h5.d/seg-<id>-<n>.h5  immutable: the entries of one build or add (paths, sizes,
//                   sha256, checksums) and their FAISS index (HNSW over float32 vectors, or
//                   IVF-PQ codes refined by float16 vectors), written and fsync'ed before the
//                   manifest names it.
// An add writes one new segment (O(new entries)) and a new manifest; a kill -9 at any point
// leaves the previous manifest, i.e. everything committed before, and an orphan file that the
// next writer removes. Writers hold "<index>.lock" (a second one is refused, not queued).
// Entries of a later segment supersede those of earlier ones with the same path (replaced
// images). Search queries every segment and merges.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "preimage/texture_index.h"

namespace preimage {

enum class IndexType { Exact, IvfPq, Hnsw };
// "exact" | "ivfpq" | "hnsw"; anything else is an Error naming --index-type.
IndexType parse_index_type(const std::string& name);
const char* index_type_name(IndexType type);
// The type of the index file at path (format version 1 files are exact). Throws Error naming
// the file when it is not a texture index.
IndexType texture_index_type(const std::string& path);

struct ApproxIndexParams {
  int dim = 128;       // compact descriptor length, split evenly across the layers
  int sample = 50000;  // entries the PCA and the IVF-PQ training see at most
  int hnsw_m = 16;     // HNSW links per node (level 0: 2·M)
  int ef_construction = 80;
  int ef_search = 96;
  int nlist = 0;  // IVF lists; 0: 4·√N of the build, at most N/39, at least 1
  int pq_m = 32;  // PQ sub-quantizers (code bytes per entry at 8 bits)
  int nprobe = 24;
  int rerank = 4;  // FAISS candidates per result, re-ranked on the compact vectors
  uint64_t seed = 1;
};

class CompactProjection {
 public:
  // Learns the projection from n full Gram vectors (n × segments.back(), row-major). dim is
  // split evenly across the layers; directions beyond the sample's rank are left zero.
  static CompactProjection fit(const float* vectors, size_t n, const std::vector<int>& segments,
                               int dim, uint64_t seed);
  // full: n × full_dim() → out: n × dim().
  void apply(const float* full, size_t n, float* out) const;
  int dim() const { return compact_segments_.back(); }
  int full_dim() const { return segments_.back(); }
  const std::vector<int>& segments() const { return segments_; }
  const std::vector<int>& compact_segments() const { return compact_segments_; }

  std::vector<int> segments_{0}, compact_segments_{0};
  std::vector<std::vector<float>> mean_;   // per layer, D_l
  std::vector<std::vector<float>> basis_;  // per layer, d_l × D_l row-major
};

// Σ_l ‖a_l − b_l‖·√L over the compact segments: the distance search reports.
float compact_distance(const float* a, const float* b, const std::vector<int>& compact_segments);

class ApproxTextureIndex {
 public:
  // Reads the manifest, the base and every segment (FAISS blobs checked against their checksums
  // before FAISS parses them). Errors name the file and what is wrong.
  static ApproxTextureIndex open(const std::string& path);
  ApproxTextureIndex();
  ~ApproxTextureIndex();
  ApproxTextureIndex(ApproxTextureIndex&&) noexcept;
  ApproxTextureIndex& operator=(ApproxTextureIndex&&) noexcept;

  // Writes a new index (the caller holds the writer lock, see build_approx_texture_index) from
  // compact descriptors (entries.size() × projection.dim()); the entries' checksums are filled
  // in. The manifest is renamed into place last.
  static void create(const std::string& path, IndexType type, const TextureIndexSettings& settings,
                     const CompactProjection& projection, const ApproxIndexParams& params,
                     std::vector<TextureEntry> entries, const float* compact,
                     int write_delay_ms = 0);
  // Appends entries (compact descriptors) as one new segment of the index at path, then commits
  // a new manifest. The caller holds the writer lock.
  static void append(const std::string& path, std::vector<TextureEntry> entries,
                     const float* compact, int write_delay_ms = 0);

  const std::string& path() const;
  IndexType type() const;
  const TextureIndexSettings& settings() const;
  const std::vector<int>& segments() const;  // of the full Gram vector
  const CompactProjection& projection() const;
  const ApproxIndexParams& params() const;
  // Live entries (superseded ones left out), in the order of the segments.
  const std::vector<TextureEntry>& entries() const;
  size_t size() const;
  int dim() const;  // compact
  size_t segment_count() const;
  size_t bytes_on_disk() const;  // manifest + base + segments

  // Top k per query (nq × dim() compact queries); hits index entries().
  std::vector<std::vector<SearchHit>> search(const float* compact_queries, int nq, int k) const;
  // Every problem found: entry checksums, per-layer norms of the stored compact vectors, rows of
  // the FAISS indexes against the entry lists. Empty when sound.
  std::vector<std::string> verify() const;

 private:
  friend IndexUpdateReport add_to_approx_texture_index(const std::string&,
                                                       const std::vector<std::string>&, Device,
                                                       const IndexUpdateOptions&);
  // with_faiss false: the manifest, the base and the entry lists only (what an add needs).
  static ApproxTextureIndex open_impl(const std::string& path, bool with_faiss);
  static ApproxTextureIndex open_entries(const std::string& path) { return open_impl(path, false); }
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Builds an approximate index from images: extracts the Gram vectors, learns the projection on
// them (at most params.sample), writes base, one segment and the manifest. Takes the writer lock.
IndexUpdateReport build_approx_texture_index(const std::vector<std::string>& images,
                                             const TextureIndexSettings& settings, IndexType type,
                                             const ApproxIndexParams& params,
                                             const std::string& out, Device device,
                                             const IndexUpdateOptions& options = {});
// Adds images to an approximate index: one new segment with the new and changed images (same
// path and checksum: unchanged). Takes the writer lock.
IndexUpdateReport add_to_approx_texture_index(const std::string& index,
                                              const std::vector<std::string>& images, Device device,
                                              const IndexUpdateOptions& options = {});

}  // namespace preimage
