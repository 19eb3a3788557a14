// Shared by the fuzz targets: the loaders under test take paths, so each input is written to one
// per-process file in /dev/shm (tmpfs: no disk I/O) and the loader reads it back from there.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace preimage::fuzz {

class InputFile {
 public:
  explicit InputFile(const char* suffix) {
    const char* dir = std::getenv("PREIMAGE_FUZZ_TMP");
    path_ = std::string(dir ? dir : "/dev/shm") + "/preimage_fuzz_" + std::to_string(::getpid()) +
            suffix;
  }
  ~InputFile() { ::unlink(path_.c_str()); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // Replaces the file's contents with data; aborts when the file cannot be written (a broken
  // harness, not a finding).
  const std::string& write(const uint8_t* data, size_t size) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n <= 0) std::abort();
      done += size_t(n);
    }
    ::close(fd);
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace preimage::fuzz
