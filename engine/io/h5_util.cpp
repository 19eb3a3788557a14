// The RAII layer over the HDF5 C API declared in h5_util.h: every public call silences HDF5's
// error printing, checks each return code and throws one preimage::Error prefixed with the
// file's context.
#include "engine/io/h5_util.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "engine/core/backend.h"
#include "preimage/error.h"
#include "preimage/hdf5_probe.h"

extern "C" void openblas_set_num_threads(int num_threads);  // OpenBLAS, linked by the engine

namespace preimage::h5 {
namespace {

// Attributes are small metadata (the largest we read: Keras' layer_names, ~25 strings); a count
// beyond this is a corrupt header, refused before anything is allocated for it.
constexpr hssize_t kMaxAttrElements = hssize_t(1) << 20;

std::string abs_path(const std::string& p) {
  if (p.empty()) return "/";
  return p[0] == '/' ? p : "/" + p;
}

Kind kind_of(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return Kind::Float;
    case H5T_INTEGER:
      return Kind::Integer;
    case H5T_STRING:
      return Kind::String;
    default:
      return Kind::Other;
  }
}

std::string type_name_of(hid_t type) {
  const size_t bits = H5Tget_size(type) * 8;
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return "float" + std::to_string(bits);
    case H5T_INTEGER:
      return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "vlen";
    case H5T_OPAQUE:
      return "opaque";
    default:
      return "unsupported type";
  }
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Float:
      return "floating point";
    case Kind::Integer:
      return "integer";
    case Kind::String:
      return "string";
    default:
      return "other";
  }
}

Dims shape_of(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank <= 0) return {};
  std::vector<hsize_t> d(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, d.data(), nullptr);
  return Dims(d.begin(), d.end());
}

size_t numel_of(const Dims& d) {
  size_t n = 1;
  for (int64_t x : d) n *= size_t(x);
  return n;
}

// A variable-length UTF-8 string type (what h5py writes for Python str).
Id vlen_string_type() {
  Id t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// Link-creation property list that creates missing parent groups.
Id intermediate_lcpl() {
  Id p(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(p.get(), 1);
  return p;
}

Id dataspace(const Dims& shape) {
  if (shape.empty()) return Id(H5Screate(H5S_SCALAR));
  std::vector<hsize_t> d(shape.begin(), shape.end());
  return Id(H5Screate_simple(int(d.size()), d.data(), nullptr));
}

// Reads n strings (fixed or variable length) from a dataset (attr=false) or attribute.
bool read_string_data(hid_t obj, bool attr, hid_t file_type, hid_t space, size_t n,
                      std::vector<std::string>* out) {
  out->assign(n, std::string());
  if (n == 0) return true;
  const htri_t vlen = H5Tis_variable_str(file_type);
  if (vlen < 0) return false;
  Id mem(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mem.get(), H5Tget_cset(file_type));
  if (vlen > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    std::vector<char*> ptrs(n, nullptr);
    const herr_t st = attr ? H5Aread(obj, mem.get(), ptrs.data())
                           : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data());
    if (st < 0) return false;
    for (size_t i = 0; i < n; ++i)
      if (ptrs[i]) (*out)[i] = ptrs[i];
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space, H5P_DEFAULT, ptrs.data());
#else
    H5Dvlen_reclaim(mem.get(), space, H5P_DEFAULT, ptrs.data());
#endif
    return true;
  }
  const size_t size = H5Tget_size(file_type);
  H5Tset_size(mem.get(), size);
  H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
  std::vector<char> buf(n * size);
  const herr_t st = attr ? H5Aread(obj, mem.get(), buf.data())
                         : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  if (st < 0) return false;
  for (size_t i = 0; i < n; ++i) {
    const char* s = buf.data() + i * size;
    (*out)[i].assign(s, strnlen(s, size));
  }
  return true;
}

herr_t collect_error(unsigned, const H5E_error2_t* e, void* data) {
  auto* v = static_cast<std::vector<std::string>*>(data);
  if (e && e->desc) v->push_back(e->desc);
  return 0;
}

}  // namespace

// ---- Id / Quiet -----------------------------------------------------------------------------

Id& Id::operator=(Id&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

bool Id::close() {
  if (id_ < 0) return true;
  herr_t st = -1;
  switch (H5Iget_type(id_)) {
    case H5I_FILE:
      st = H5Fclose(id_);
      break;
    case H5I_GROUP:
      st = H5Gclose(id_);
      break;
    case H5I_DATASET:
      st = H5Dclose(id_);
      break;
    case H5I_DATASPACE:
      st = H5Sclose(id_);
      break;
    case H5I_DATATYPE:
      st = H5Tclose(id_);
      break;
    case H5I_ATTR:
      st = H5Aclose(id_);
      break;
    case H5I_GENPROP_LST:
      st = H5Pclose(id_);
      break;
    default:
      st = H5Idec_ref(id_) < 0 ? -1 : 0;
      break;
  }
  id_ = -1;
  return st >= 0;
}

void Id::reset() {
  if (id_ < 0) return;
  Quiet q;
  close();
}

Quiet::Quiet() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

Quiet::~Quiet() {
  H5Eset_auto2(H5E_DEFAULT, func_, data_);
}

std::string last_error() {
  std::vector<std::string> msgs;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &msgs);
  if (msgs.empty()) return std::string();
  // The file driver reports "..., errno = 28, error message = 'No space left on device', ...":
  // the OS reason alone says it best.
  const std::string& m = msgs.back();
  const std::string key = "error message = '";
  const size_t at = m.find(key);
  if (at != std::string::npos) {
    const size_t end = m.find('\'', at + key.size());
    if (end != std::string::npos) return m.substr(at + key.size(), end - at - key.size());
  }
  return m;
}

std::string dims_str(const Dims& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ",";
    s += dims[i] == any_dim ? std::string("N") : std::to_string(dims[i]);
  }
  return s + ")";
}

size_t File::DatasetInfo::numel() const {
  return numel_of(shape);
}

// ---- global heap check -----------------------------------------------------------------------
// Variable-length strings (h5py's str attributes and datasets) live in global heap collections
// ("GCOL"). HDF5 1.10.8 (Debian 12) trusts their object sizes: an object of size 0 makes the
// collection parser loop forever, one larger than its collection makes H5HG_read copy past the
// heap (both found by fuzz/fuzz_weights and fuzz/fuzz_index; newer HDF5 releases check them).
// Before HDF5 opens a file, every collection in it is walked the way HDF5 1.10 walks it and a
// file with a malformed one is refused. A "GCOL" whose stated size runs past the end of the
// file is left to HDF5 (which then fails to read it cleanly): random data that happens to spell
// "GCOL" is not mistaken for a collection.
static std::string corrupt_global_heap(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 16) {
    ::close(fd);
    return {};
  }
  const size_t n = size_t(st.st_size);
  void* map = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return {};
  const auto* b = static_cast<const unsigned char*>(map);
  auto le = [&](size_t at, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = v << 8 | b[at + size_t(i)];
    return v;
  };
  // Size of lengths from the superblock (at 0, 512, 1024, ...; 8 when not found).
  int len_size = 8;
  static const unsigned char kSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (size_t at = 0; at + 16 <= n; at = at ? at * 2 : 512)
    if (std::memcmp(b + at, kSig, 8) == 0) {
      const int v = b[at + 8];
      const int s = b[at + (v <= 1 ? 14 : 10)];
      if (s == 2 || s == 4 || s == 8) len_size = s;
      break;
    }
  std::string why;
  const size_t hdr = 8 + size_t(len_size), objhdr = 8 + size_t(len_size);
  for (const unsigned char* hit = b; why.empty();) {
    hit = static_cast<const unsigned char*>(::memmem(hit, n - size_t(hit - b), "GCOL", 4));
    if (!hit) break;
    const size_t o = size_t(hit - b);
    hit += 4;
    if (o + hdr > n || b[o + 4] != 1) continue;
    const uint64_t size = le(o + 8, len_size);
    if (size > n - o) continue;  // not backed by the file: HDF5 reports it
    if (size < hdr) {
      why = "global heap at byte " + std::to_string(o) + " is smaller than its header";
      break;
    }
    const size_t end = o + size_t(size);
    for (size_t p = o + hdr; p < end;) {
      if (p + objhdr > end) break;  // trailing free space
      const unsigned idx = unsigned(le(p, 2));
      const uint64_t osize = le(p + 8, len_size);
      const uint64_t need = idx > 0 ? objhdr + ((osize + 7) & ~uint64_t(7)) : osize;
      if (need == 0 || osize > end - p || need > end - p) {
        why = "global heap at byte " + std::to_string(o) + " has an object of size " +
              std::to_string(osize) + " that does not fit it";
        break;
      }
      p += size_t(need);
    }
  }
  ::munmap(map, n);
  return why;
}

// ---- rehearsal in a child process (preimage/hdf5_probe.h) -------------------------------------
// With the probe on, File::open forks. The child is an exact copy of this process at that moment,
// so it returns from open() and runs the caller's own loader on the file — the same calls, from
// the same memory state, hence the same crash if HDF5 crashes (a wild read through a corrupt heap
// ID depends on what lies in memory, so only the same code from the same state reproduces it).
// When that File closes or is destroyed (normal end, or unwinding from an Error), the child
// reports "done" through a pipe and exits. The parent waits, then reads the file itself, or
// throws naming the file when the child died. The child writes nothing (stdout/stderr go to
// /dev/null, no core file) and probes no further files.
static std::atomic<bool> g_probe{false};
static int g_rehearsal_fd = -1;  // in a rehearsing child: the pipe's write end

bool rehearsing() {
  return g_rehearsal_fd >= 0;
}

void end_rehearsal() {
  const char done = 'k';
  const ssize_t w = ::write(g_rehearsal_fd, &done, 1);
  ::_exit(w == 1 ? 0 : 3);
}

// Forks. Child: returns true (go on and rehearse). Parent: returns false once the child has
// finished its rehearsal, or throws Error("<context>: ...") when the child died. When fork or
// pipe fails, returns false (the file is read unprotected).
static bool fork_rehearsal(const std::string& context) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return false;
  }
  if (pid == 0) {
    ::close(fds[0]);
    g_rehearsal_fd = fds[1];
    // Device work is not for a forked child (the simulator's workers and a real CUDA context do
    // not survive fork): the CUDA dispatch ends the rehearsal.
    set_device_use_hook(&end_rehearsal);
    g_probe.store(false);
    // OpenMP's (and OpenMP-built OpenBLAS's) worker threads did not survive the fork: a
    // parallel region sized for them would wait for them forever (the decoder loader fills
    // tensors in parallel). One thread runs every region inline.
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
    }
    return true;
  }
  ::close(fds[1]);
  char c = 0;
  ssize_t r;
  do r = ::read(fds[0], &c, 1);
  while (r < 0 && errno == EINTR);
  ::close(fds[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (r == 1 && c == 'k' && WIFEXITED(st) && WEXITSTATUS(st) == 0) return false;
  std::string how;
  if (WIFSIGNALED(st)) {
    const int sig = WTERMSIG(st);
    // Stopped from outside (Ctrl-C reaches the whole process group, the OOM killer, kill):
    // says nothing about the file; this process reads it itself and meets its own signals.
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT || sig == SIGKILL)
      return false;
    const char* name = sigabbrev_np(sig);
    how = name ? std::string("signal SIG") + name : "signal " + std::to_string(sig);
  } else {
    // A sanitizer's exit after its report (the status, not a signal).
    how = "exit status " + std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  }
  throw Error(context + ": corrupt HDF5 file: the HDF5 library crashed reading it (" + how +
              " in a probe process; docs/reliability.md)");
}

// ---- File -----------------------------------------------------------------------------------

File File::open(const std::string& path, const std::string& context) {
  Quiet q;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw Error(context + ": no such file");
    throw Error(context + ": cannot read: " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw Error(context + ": is a directory, expected an HDF5 file");
  if (::access(path.c_str(), R_OK) != 0)
    throw Error(context + ": cannot read: " + std::strerror(errno));
  if (H5Fis_hdf5(path.c_str()) <= 0) throw Error(context + ": not an HDF5 file or truncated");
  const std::string heap = corrupt_global_heap(path);
  if (!heap.empty()) throw Error(context + ": corrupt HDF5 file (" + heap + ")");
  if (g_probe.load() && fork_rehearsal(context)) {
    // The rehearsing child: the caller's loader goes on with this File; any failure to open
    // ends the rehearsal here (the parent then meets it itself).
    try {
      File f = open_hdf5(path, context);
      f.rehearsal_ = true;
      return f;
    } catch (...) {
      end_rehearsal();
    }
  }
  return open_hdf5(path, context);
}

File File::open_hdf5(const std::string& path, const std::string& context) {
  Quiet q;
  Id fapl(H5Pcreate(H5P_FILE_ACCESS));
  // Readers never need HDF5's advisory locks (outputs are written to temporary names and
  // renamed); locks fail on some network and read-only filesystems.
  H5Pset_file_locking(fapl.get(), false, true);
  // Closing the file closes whatever is still open in it: an object HDF5 failed to close (a
  // corrupt filter pipeline) otherwise keeps the file open until exit, where HDF5 prints
  // "infinite loop closing library" (found by fuzz/fuzz_weights).
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!f.valid()) throw Error(context + ": not an HDF5 file or truncated");
  return File(std::move(f), path, context);
}

File File::create(const std::string& path, const std::string& context) {
  Quiet q;
  Id fapl(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_file_locking(fapl.get(), false, true);
  Id f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  if (!f.valid()) {
    const std::string why = last_error();
    throw Error(context + ": cannot create" + (why.empty() ? "" : " (" + why + ")"));
  }
  return File(std::move(f), path, context);
}

File::File(File&& o) noexcept
    : file_(std::move(o.file_)),
      path_(std::move(o.path_)),
      context_(std::move(o.context_)),
      rehearsal_(std::exchange(o.rehearsal_, false)) {}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (rehearsal_) end_rehearsal();
    file_ = std::move(o.file_);
    path_ = std::move(o.path_);
    context_ = std::move(o.context_);
    rehearsal_ = std::exchange(o.rehearsal_, false);
  }
  return *this;
}

File::~File() {
  if (rehearsal_) end_rehearsal();
}

void File::close() {
  if (rehearsal_) end_rehearsal();
  Quiet q;
  if (!file_.valid()) return;
  if (H5Fflush(file_.get(), H5F_SCOPE_LOCAL) < 0) {
    const std::string why = last_error();
    file_.reset();
    fail("cannot flush" + (why.empty() ? std::string() : " (" + why + ")"));
  }
  if (!file_.close()) fail("cannot close");
}

void File::fail(const std::string& msg) const {
  throw Error(context_ + ": " + msg);
}

bool File::exists(const std::string& path) const {
  Quiet q;
  const std::string p = abs_path(path);
  if (p == "/") return true;
  // H5Lexists fails (rather than answering false) when a parent is missing: test each prefix.
  std::string prefix;
  size_t pos = 1;
  while (pos <= p.size()) {
    size_t slash = p.find('/', pos);
    if (slash == std::string::npos) slash = p.size();
    if (slash == pos) return slash == p.size();  // "a//b" → false; a trailing "/" is fine
    prefix = p.substr(0, slash);
    if (H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    pos = slash + 1;
  }
  return H5Oexists_by_name(file_.get(), prefix.c_str(), H5P_DEFAULT) > 0;
}

Id File::open_object(const std::string& obj) const {
  const std::string p = abs_path(obj);
  if (!exists(p)) fail("object '" + p + "' missing");
  Id o(H5Oopen(file_.get(), p.c_str(), H5P_DEFAULT));
  if (!o.valid()) fail("cannot open object '" + p + "'");
  return o;
}

bool File::is_group(const std::string& path) const {
  Quiet q;
  if (!exists(path)) return false;
  Id o(H5Oopen(file_.get(), abs_path(path).c_str(), H5P_DEFAULT));
  return o.valid() && H5Iget_type(o.get()) == H5I_GROUP;
}

bool File::is_dataset(const std::string& path) const {
  Quiet q;
  if (!exists(path)) return false;
  Id o(H5Oopen(file_.get(), abs_path(path).c_str(), H5P_DEFAULT));
  return o.valid() && H5Iget_type(o.get()) == H5I_DATASET;
}

std::vector<std::string> File::children(const std::string& group) const {
  Quiet q;
  const std::string p = abs_path(group);
  if (!is_group(p)) fail("group '" + p + "' missing");
  Id g(H5Gopen2(file_.get(), p.c_str(), H5P_DEFAULT));
  H5G_info_t info{};
  if (!g.valid() || H5Gget_info(g.get(), &info) < 0) fail("cannot list group '" + p + "'");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len =
        H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail("cannot list group '" + p + "'");
    std::string name(size_t(len) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(size_t(len));
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void File::create_group(const std::string& path) {
  Quiet q;
  const std::string p = abs_path(path);
  if (p == "/" || is_group(p)) return;
  Id lcpl = intermediate_lcpl();
  Id g(H5Gcreate2(file_.get(), p.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!g.valid()) {
    const std::string why = last_error();
    fail("cannot create group '" + p + "'" + (why.empty() ? "" : " (" + why + ")"));
  }
}

// ---- datasets -------------------------------------------------------------------------------

File::DatasetInfo File::dataset_info(const std::string& path) const {
  Quiet q;
  const std::string p = abs_path(path);
  if (!is_dataset(p)) fail("dataset '" + p + "' missing");
  Id d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT));
  Id type(H5Dget_type(d.get()));
  Id space(H5Dget_space(d.get()));
  if (!d.valid() || !type.valid() || !space.valid()) fail("cannot open dataset '" + p + "'");
  DatasetInfo info;
  info.kind = kind_of(type.get());
  info.type_name = type_name_of(type.get());
  info.shape = shape_of(space.get());
  // Limits before allocation: callers size their buffers from this shape, so its byte count
  // must not overflow (a corrupt header); require_stored() bounds it by what the file holds.
  size_t bytes = std::max<size_t>(H5Tget_size(type.get()), 1);
  for (int64_t x : info.shape) {
    if (x < 0 || (x > 0 && bytes > std::numeric_limits<size_t>::max() / size_t(x)))
      fail("dataset '" + p + "' declares shape " + dims_str(info.shape) +
           ", too large to address (corrupt file)");
    bytes *= size_t(x);
  }
  return info;
}

void File::require_stored(const std::string& path) const {
  Quiet q;
  const std::string p = abs_path(path);
  const DatasetInfo info = dataset_info(p);
  Id d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT));
  Id type(H5Dget_type(d.get()));
  if (!d.valid() || !type.valid()) fail("cannot open dataset '" + p + "'");
  size_t bytes = std::max<size_t>(H5Tget_size(type.get()), 1);
  for (int64_t x : info.shape) bytes *= size_t(x);  // no overflow: checked by dataset_info
  // Beyond 1 MiB the bytes must be plausibly stored: deflate expands at most ~1032:1, and the
  // files whose sizes this guards (indexes, checkpoints) are always written in full.
  constexpr size_t kAlwaysAllowed = size_t(1) << 20, kMaxExpansion = 2048;
  if (bytes > kAlwaysAllowed) {
    // The storage size HDF5 reports comes from the file's own layout message, which a corrupt
    // file can inflate (fuzz_index: 1.7 GB "stored" in a 24 KB file, then 435 billion strings
    // allocated): nothing stored exceeds the file.
    hsize_t file_size = 0;
    if (H5Fget_filesize(file_.get(), &file_size) < 0) fail("cannot get the file size");
    const hsize_t stored = std::min(H5Dget_storage_size(d.get()), file_size);
    if (bytes / kMaxExpansion > stored)
      fail("dataset '" + p + "' declares shape " + dims_str(info.shape) + " (" +
           std::to_string(bytes) + " bytes) but the file stores only " + std::to_string(stored) +
           " bytes of it (truncated or corrupt)");
  }
}

Dims File::check_dataset(const std::string& path, Kind kind, const Dims& expected,
                         const std::string& type_desc) const {
  const std::string p = abs_path(path);
  if (!is_dataset(p))
    fail("dataset '" + p + "' missing (expected " + dims_str(expected) + " " + type_desc + ")");
  const DatasetInfo info = dataset_info(p);
  bool ok = info.shape.size() == expected.size();
  for (size_t i = 0; ok && i < expected.size(); ++i)
    ok = expected[i] == any_dim ? info.shape[i] > 0 : info.shape[i] == expected[i];
  if (!ok) {
    std::string msg = "dataset '" + p + "' has shape " + dims_str(info.shape) + ", expected " +
                      dims_str(expected);
    if (info.shape.size() != expected.size())
      msg += " (rank " + std::to_string(info.shape.size()) + ", expected rank " +
             std::to_string(expected.size()) + ")";
    fail(msg);
  }
  if (info.kind != kind)
    fail("dataset '" + p + "' has type " + info.type_name + ", expected " + type_desc);
  return info.shape;
}

void File::read_numeric(const std::string& path, hid_t mem_type, void* out, size_t count) const {
  Quiet q;
  const std::string p = abs_path(path);
  const DatasetInfo info = dataset_info(p);
  if (info.kind != Kind::Float && info.kind != Kind::Integer)
    fail("dataset '" + p + "' has type " + info.type_name + ", expected a numeric type");
  if (info.numel() != count)
    fail("dataset '" + p + "' has " + std::to_string(info.numel()) + " elements " +
         dims_str(info.shape) + ", expected " + std::to_string(count));
  Id d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT));
  if (count == 0) return;
  if (H5Dread(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    const std::string why = last_error();
    fail("cannot read dataset '" + p + "' (file truncated or corrupt" +
         (why.empty() ? "" : ": " + why) + ")");
  }
}

void File::read_hyperslab(const std::string& path, const Dims& start, const Dims& stride,
                          const Dims& count, const Dims& block, float* out) const {
  Quiet q;
  const std::string p = abs_path(path);
  const DatasetInfo info = dataset_info(p);
  if (info.kind != Kind::Float && info.kind != Kind::Integer)
    fail("dataset '" + p + "' has type " + info.type_name + ", expected a numeric type");
  const size_t rank = info.shape.size();
  bool ok = rank > 0 && start.size() == rank && stride.size() == rank && count.size() == rank &&
            block.size() == rank;
  std::vector<hsize_t> s0(rank), st(rank), cn(rank), bl(rank), mem_dims(rank);
  size_t total = 1;
  for (size_t i = 0; ok && i < rank; ++i) {
    ok = start[i] >= 0 && stride[i] > 0 && count[i] >= 0 && block[i] >= 0 &&
         (count[i] == 0 || block[i] == 0 ||
          start[i] + (count[i] - 1) * stride[i] + block[i] <= info.shape[i]);
    s0[i] = hsize_t(start[i]);
    st[i] = hsize_t(stride[i]);
    cn[i] = hsize_t(count[i]);
    bl[i] = hsize_t(block[i]);
    mem_dims[i] = cn[i] * bl[i];
    total *= size_t(mem_dims[i]);
  }
  if (!ok)
    fail("dataset '" + p + "' of shape " + dims_str(info.shape) +
         ": hyperslab out of range (start " + dims_str(start) + ", stride " + dims_str(stride) +
         ", count " + dims_str(count) + ", block " + dims_str(block) + ")");
  if (total == 0) return;
  Id d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT));
  Id space(H5Dget_space(d.get()));
  // Same rank as the file selection: HDF5 then copies whole runs instead of element by element.
  Id mem(H5Screate_simple(int(rank), mem_dims.data(), nullptr));
  if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, s0.data(), st.data(), cn.data(), bl.data()) <
          0 ||
      H5Dread(d.get(), H5T_NATIVE_FLOAT, mem.get(), space.get(), H5P_DEFAULT, out) < 0) {
    const std::string why = last_error();
    fail("cannot read dataset '" + p + "' (file truncated or corrupt" +
         (why.empty() ? "" : ": " + why) + ")");
  }
}

void File::read(const std::string& path, float* out, size_t count) const {
  read_numeric(path, H5T_NATIVE_FLOAT, out, count);
}
void File::read(const std::string& path, double* out, size_t count) const {
  read_numeric(path, H5T_NATIVE_DOUBLE, out, count);
}
void File::read(const std::string& path, int64_t* out, size_t count) const {
  const DatasetInfo info = dataset_info(path);
  if (info.kind != Kind::Integer)
    fail("dataset '" + abs_path(path) + "' has type " + info.type_name + ", expected an integer");
  read_numeric(path, H5T_NATIVE_INT64, out, count);
}

std::vector<std::string> File::read_strings(const std::string& path) const {
  Quiet q;
  const std::string p = abs_path(path);
  const DatasetInfo info = dataset_info(p);
  if (info.kind != Kind::String)
    fail("dataset '" + p + "' has type " + info.type_name + ", expected strings");
  require_stored(p);
  Id d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT));
  Id type(H5Dget_type(d.get()));
  Id space(H5Dget_space(d.get()));
  std::vector<std::string> out;
  if (!read_string_data(d.get(), false, type.get(), space.get(), info.numel(), &out))
    fail("cannot read dataset '" + p + "' (file truncated or corrupt)");
  return out;
}

void File::write_numeric(const std::string& path, hid_t mem_type, const void* data,
                         const Dims& shape) {
  Quiet q;
  const std::string p = abs_path(path);
  hid_t file_type = H5T_IEEE_F32LE;
  if (H5Tequal(mem_type, H5T_NATIVE_DOUBLE) > 0) file_type = H5T_IEEE_F64LE;
  if (H5Tequal(mem_type, H5T_NATIVE_INT64) > 0) file_type = H5T_STD_I64LE;
  Id space = dataspace(shape);
  Id lcpl = intermediate_lcpl();
  Id d(H5Dcreate2(file_.get(), p.c_str(), file_type, space.get(), lcpl.get(), H5P_DEFAULT,
                  H5P_DEFAULT));
  if (!d.valid()) {
    const std::string why = last_error();
    fail("cannot create dataset '" + p + "'" + (why.empty() ? "" : " (" + why + ")"));
  }
  if (numel_of(shape) == 0) return;
  if (H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    const std::string why = last_error();
    fail("cannot write dataset '" + p + "'" + (why.empty() ? "" : " (" + why + ")"));
  }
}

void File::write(const std::string& path, const float* data, const Dims& shape) {
  write_numeric(path, H5T_NATIVE_FLOAT, data, shape);
}
void File::write(const std::string& path, const double* data, const Dims& shape) {
  write_numeric(path, H5T_NATIVE_DOUBLE, data, shape);
}
void File::write(const std::string& path, const int64_t* data, const Dims& shape) {
  write_numeric(path, H5T_NATIVE_INT64, data, shape);
}

void File::write_strings(const std::string& path, const std::vector<std::string>& values) {
  Quiet q;
  const std::string p = abs_path(path);
  Id type = vlen_string_type();
  Id space = dataspace({int64_t(values.size())});
  Id lcpl = intermediate_lcpl();
  Id d(H5Dcreate2(file_.get(), p.c_str(), type.get(), space.get(), lcpl.get(), H5P_DEFAULT,
                  H5P_DEFAULT));
  if (!d.valid()) fail("cannot create dataset '" + p + "'");
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!values.empty() &&
      H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) {
    const std::string why = last_error();
    fail("cannot write dataset '" + p + "'" + (why.empty() ? "" : " (" + why + ")"));
  }
}

// ---- attributes -----------------------------------------------------------------------------

bool File::has_attr(const std::string& obj, const std::string& name) const {
  Quiet q;
  if (!exists(obj)) return false;
  return H5Aexists_by_name(file_.get(), abs_path(obj).c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

Id File::open_attr(const std::string& obj, const std::string& name) const {
  const std::string p = abs_path(obj);
  if (!has_attr(p, name)) fail("attribute '" + name + "' of '" + p + "' missing");
  Id a(H5Aopen_by_name(file_.get(), p.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a.valid()) fail("cannot open attribute '" + name + "' of '" + p + "'");
  return a;
}

std::vector<std::string> File::read_attr_strings(const std::string& obj,
                                                 const std::string& name) const {
  Quiet q;
  Id a = open_attr(obj, name);
  Id type(H5Aget_type(a.get()));
  Id space(H5Aget_space(a.get()));
  if (kind_of(type.get()) != Kind::String)
    fail("attribute '" + name + "' of '" + abs_path(obj) + "' has type " +
         type_name_of(type.get()) + ", expected strings");
  std::vector<std::string> out;
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n > kMaxAttrElements)
    fail("attribute '" + name + "' of '" + abs_path(obj) + "' holds " + std::to_string(n) +
         " strings, more than " + std::to_string(kMaxAttrElements) + " (corrupt file)");
  if (n < 0 || !read_string_data(a.get(), true, type.get(), space.get(), size_t(n), &out))
    fail("cannot read attribute '" + name + "' of '" + abs_path(obj) + "'");
  return out;
}

std::string File::read_attr_string(const std::string& obj, const std::string& name) const {
  const auto v = read_attr_strings(obj, name);
  if (v.size() != 1)
    fail("attribute '" + name + "' of '" + abs_path(obj) + "' holds " + std::to_string(v.size()) +
         " strings, expected one");
  return v[0];
}

size_t File::attr_count(hid_t attr, const std::string& obj, const std::string& name,
                        Kind want) const {
  Id type(H5Aget_type(attr));
  Id space(H5Aget_space(attr));
  const Kind k = kind_of(type.get());
  const bool ok = want == Kind::Float ? (k == Kind::Float || k == Kind::Integer) : k == want;
  if (!ok)
    fail("attribute '" + name + "' of '" + abs_path(obj) + "' has type " +
         type_name_of(type.get()) + ", expected " + kind_name(want));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail("cannot read attribute '" + name + "' of '" + abs_path(obj) + "'");
  if (n > kMaxAttrElements)
    fail("attribute '" + name + "' of '" + abs_path(obj) + "' holds " + std::to_string(n) +
         " values, more than " + std::to_string(kMaxAttrElements) + " (corrupt file)");
  return size_t(n);
}

std::vector<double> File::read_attr_doubles(const std::string& obj, const std::string& name) const {
  Quiet q;
  Id a = open_attr(obj, name);
  std::vector<double> v(attr_count(a.get(), obj, name, Kind::Float));
  if (!v.empty() && H5Aread(a.get(), H5T_NATIVE_DOUBLE, v.data()) < 0)
    fail("cannot read attribute '" + name + "' of '" + abs_path(obj) + "'");
  return v;
}

std::vector<int64_t> File::read_attr_int64s(const std::string& obj, const std::string& name) const {
  Quiet q;
  Id a = open_attr(obj, name);
  std::vector<int64_t> v(attr_count(a.get(), obj, name, Kind::Integer));
  if (!v.empty() && H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) < 0)
    fail("cannot read attribute '" + name + "' of '" + abs_path(obj) + "'");
  return v;
}

void File::write_attr(const std::string& obj, const std::string& name, hid_t mem_type,
                      const void* data, size_t count) {
  Quiet q;
  const std::string p = abs_path(obj);
  Id o = open_object(p);
  if (H5Aexists(o.get(), name.c_str()) > 0) H5Adelete(o.get(), name.c_str());
  hid_t file_type = mem_type;
  if (H5Tequal(mem_type, H5T_NATIVE_FLOAT) > 0) file_type = H5T_IEEE_F32LE;
  if (H5Tequal(mem_type, H5T_NATIVE_DOUBLE) > 0) file_type = H5T_IEEE_F64LE;
  if (H5Tequal(mem_type, H5T_NATIVE_INT64) > 0) file_type = H5T_STD_I64LE;
  Id space = count == 1 ? dataspace({}) : dataspace({int64_t(count)});
  Id a(H5Acreate2(o.get(), name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!a.valid() || (count > 0 && H5Awrite(a.get(), mem_type, data) < 0)) {
    const std::string why = last_error();
    fail("cannot write attribute '" + name + "' of '" + p + "'" +
         (why.empty() ? "" : " (" + why + ")"));
  }
}

void File::write_attr_string(const std::string& obj, const std::string& name,
                             const std::string& value) {
  Id type = vlen_string_type();
  const char* ptr = value.c_str();
  write_attr(obj, name, type.get(), &ptr, 1);
}

void File::write_attr_strings(const std::string& obj, const std::string& name,
                              const std::vector<std::string>& values) {
  Id type = vlen_string_type();
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (values.size() == 1) {
    // A one-element list stays a 1-D array so that readers see a list.
    Quiet q;
    const std::string p = abs_path(obj);
    Id o = open_object(p);
    if (H5Aexists(o.get(), name.c_str()) > 0) H5Adelete(o.get(), name.c_str());
    Id space = dataspace({1});
    Id a(H5Acreate2(o.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!a.valid() || H5Awrite(a.get(), type.get(), ptrs.data()) < 0)
      fail("cannot write attribute '" + name + "' of '" + p + "'");
    return;
  }
  write_attr(obj, name, type.get(), ptrs.data(), ptrs.size());
}

void File::write_attr_floats(const std::string& obj, const std::string& name,
                             const std::vector<float>& values) {
  write_attr(obj, name, H5T_NATIVE_FLOAT, values.data(), values.size());
}
void File::write_attr_doubles(const std::string& obj, const std::string& name,
                              const std::vector<double>& values) {
  write_attr(obj, name, H5T_NATIVE_DOUBLE, values.data(), values.size());
}
void File::write_attr_int64s(const std::string& obj, const std::string& name,
                             const std::vector<int64_t>& values) {
  write_attr(obj, name, H5T_NATIVE_INT64, values.data(), values.size());
}

}  // namespace preimage::h5

namespace preimage {

void set_hdf5_probe(bool on) {
  h5::g_probe.store(on);
}

bool hdf5_probe_enabled() {
  return h5::g_probe.load();
}

}  // namespace preimage
