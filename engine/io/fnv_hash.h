// FNV-1a 64-bit: the fast, non-cryptographic content hash that the texture index (entry
// checksums) and the attribute classifiers (weights identity) record in their files.
// Engine-private.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace preimage {

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  void add(const std::string& s) { add(s.c_str(), s.size() + 1); }
};

inline std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace preimage
