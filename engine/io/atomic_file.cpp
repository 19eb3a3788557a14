// Crash-safe output files: the content goes to "<path>.tmp.<pid>", is fsync'ed, renamed over
// <path>, and the directory is fsync'ed so that the rename itself survives a crash. Every failure
// (including ENOSPC / EFBIG on write or close) removes the temporary file and throws Error naming
// the path and the OS reason.
#include "preimage/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "preimage/error.h"

namespace preimage {
namespace {

std::string os_reason(int err) {
  return std::strerror(err);
}

[[noreturn]] void fail(const std::string& path, const std::string& step, int err) {
  throw Error("cannot write '" + path + "': " + step + ": " + os_reason(err));
}

// Directory holding path ("." for a bare file name).
std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Flushes a file's data and metadata to disk; returns errno or 0.
int fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  if (::fsync(fd) != 0) err = errno;
  // Directories on some filesystems refuse fsync (EINVAL): the rename is still done.
  if (directory && (err == EINVAL || err == EROFS)) err = 0;
  if (::close(fd) != 0 && err == 0) err = errno;
  return err;
}

// Removes "<name>.tmp.<pid>" files next to path left by writers that were killed (SIGKILL, power
// loss) before they could clean up: only when that pid no longer exists on this machine. Best
// effort; a live pid (or one this host cannot see) is left alone.
void remove_stale_temporaries(const std::string& path) {
  const std::string dir = parent_dir(path);
  const size_t slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    bool numeric = digits.size() < 10;
    for (char c : digits) numeric = numeric && std::isdigit(static_cast<unsigned char>(c));
    if (!numeric) continue;
    const pid_t pid = static_cast<pid_t>(std::strtol(digits.c_str(), nullptr, 10));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) ::unlink((dir + "/" + name).c_str());
  }
  ::closedir(d);
}

}  // namespace

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  require(!path.empty(), "cannot write '': empty output path");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  remove_stale_temporaries(path);
  try {
    write(tmp);
    if (int err = fsync_path(tmp, false)) fail(path, "fsync " + tmp, err);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "rename from " + tmp, errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (int err = fsync_path(parent_dir(path), true)) fail(path, "fsync directory", err);
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  write_atomically(path, [&](const std::string& tmp) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) fail(path, "open " + tmp, errno);
    const char* p = static_cast<const char*>(data);
    size_t left = size;
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        fail(path, "write", err);
      }
      if (n == 0) {  // no progress and no errno: treat as a full device
        ::close(fd);
        fail(path, "write", ENOSPC);
      }
      p += n;
      left -= size_t(n);
    }
    if (::close(fd) != 0) fail(path, "close", errno);
  });
}

}  // namespace preimage
