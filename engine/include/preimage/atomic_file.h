// Crash-safe output: write to "<path>.tmp.<pid>", fsync, then rename over <path>. A reader (or a
// process killed midway) sees the old file or the new one, never a partial one. Temporaries of
// writers killed before they could clean up are removed by the next write to the same path.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace preimage {

// Calls write(tmp_path) and renames tmp_path → path on success; on any exception removes the
// temporary file and rethrows. Errors name the path and the OS reason (e.g. disk full).
void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write);

// Same, for a byte buffer (checks every write and the final close).
void write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace preimage
