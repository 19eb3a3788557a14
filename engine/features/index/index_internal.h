// Pieces of the exact texture index (engine/features/index/texture_index.cpp) that the approximate
// index (engine/features/index/approx_index.cpp) shares: entry checksums, the writer lock, feature
// extraction of image lists, and the settings attributes of the index file. Engine-private.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/core/strings.h"
#include "engine/io/h5_util.h"
#include "preimage/texture_index.h"

namespace preimage::index_internal {

// FNV-1a 64 (hex) of an entry's path, size, sha256 and stored vector bytes.
std::string entry_checksum(const TextureEntry& e, const unsigned char* bytes, size_t n);
std::string absolute_path(const std::string& p);

// Exclusive advisory lock on "<index>.lock", taken without waiting: a second writer of the same
// index is refused with an Error naming the index, the lock file and the holder's pid.
class WriterLock {
 public:
  explicit WriterLock(const std::string& index);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  int fd_ = -1;
};

// Removes "<file>.tmp.<pid>" files (in file's directory) that killed writers left behind.
void remove_stale_temporaries(const std::string& file);

struct NewEntry {
  TextureEntry entry;
  std::vector<unsigned char> bytes;  // the vector as stored (float32 or float16)
};
// Absolute, de-duplicated paths with their SHA-256; unreadable files go to report.skipped.
std::vector<std::pair<std::string, std::string>> hashed_images(
    const std::vector<std::string>& images, IndexUpdateReport& report);
// Gram vectors of the images, in batches of equal shapes; unreadable images go to
// report.skipped.
std::vector<NewEntry> extract(TextureFeatures& feat,
                              const std::vector<std::pair<std::string, std::string>>& to_index,
                              const IndexUpdateOptions& opt, IndexUpdateReport& report);

// The settings attributes of an index file's root (layers, channels, segments, weights, arch,
// size, crop; dtype is the caller's), and reading them back with the checks of
// TextureIndex::open. segments: layers + 1 offsets of the full Gram vector.
void write_settings(h5::File& f, const TextureIndexSettings& s, const std::vector<int>& segments);
void read_settings(const h5::File& f, TextureIndexSettings& s, std::vector<int>& segments);

}  // namespace preimage::index_internal
