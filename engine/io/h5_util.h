// Small RAII layer over the HDF5 C API (private to the engine and its tests): files opened with
// clear errors, datasets of float/double/int64/strings, attributes (strings, numeric arrays),
// groups and shape checks. HDF5's own error printing is silenced around every call; each failure
// becomes one preimage::Error that starts with the file's context, e.g.
//   weights file 'vgg19.h5': dataset '/conv3_1/weight' has shape (3,3), expected (256,128,3,3)
// Floating-point datasets of any precision are converted on read; integers likewise.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace preimage::h5 {

// Owns one HDF5 identifier (file, group, dataset, dataspace, datatype, attribute, property list)
// and closes it with the matching H5?close.
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept;
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports whether HDF5 succeeded (files: data flushed).
  bool close();

 private:
  hid_t id_ = -1;
};

// Saves the current HDF5 automatic error printing, disables it, restores it on destruction.
class Quiet {
 public:
  Quiet();
  ~Quiet();
  Quiet(const Quiet&) = delete;
  Quiet& operator=(const Quiet&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// Element kinds that shape/type checks expect (Other: compound, enum, ... never expected).
enum class Kind { Float, Integer, String, Other };

// A dimension in an expected shape: a size, or any_dim (printed "N") for "any positive size".
inline constexpr int64_t any_dim = -1;
using Dims = std::vector<int64_t>;
std::string dims_str(const Dims& dims);  // "(256,128,3,3)", any_dim → "N"

class File {
 public:
  // Opens read-only. context names the file in every message, e.g. "weights file 'a.h5'".
  // Missing file → "<context>: no such file"; not HDF5 or truncated → "<context>: not an HDF5
  // file or truncated".
  // With preimage::set_hdf5_probe(true), the caller's reading is first rehearsed in a forked
  // child (h5_util.cpp), and a crash there throws "<context>: corrupt HDF5 file: the HDF5
  // library crashed reading it (...)".
  static File open(const std::string& path, const std::string& context);
  // Creates (truncating) a file for writing.
  static File create(const std::string& path, const std::string& context);

  File() = default;
  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const { return path_; }
  const std::string& context() const { return context_; }
  hid_t id() const { return file_.get(); }
  // Flushes and closes; throws when HDF5 cannot (e.g. disk full).
  void close();

  // Throws Error("<context>: msg").
  [[noreturn]] void fail(const std::string& msg) const;

  // ---- objects: paths are absolute ("/a/b") or relative to the root ----
  bool exists(const std::string& path) const;  // checks every component; false for "" parts
  bool is_group(const std::string& path) const;
  bool is_dataset(const std::string& path) const;
  std::vector<std::string> children(const std::string& group) const;  // sorted names
  void create_group(const std::string& path);                         // creates missing parents too

  // ---- datasets ----
  struct DatasetInfo {
    Kind kind = Kind::Other;
    std::string type_name;  // "float32", "int64", "uint8", "string", ...
    Dims shape;
    size_t numel() const;
  };
  DatasetInfo dataset_info(const std::string& path) const;  // throws "dataset 'p' missing"
  // Limits before allocation for shapes the file itself decides (entry counts): throws when the
  // dataset declares over 1 MiB but the file stores less than 1/2048 of it (a corrupt header
  // in a small file). read_vector() and read_strings() call it.
  void require_stored(const std::string& path) const;
  // Checks that path is a dataset of kind with the expected shape (any_dim matches any positive
  // size); returns its actual shape. type_desc names the expected type in messages ("float32").
  // Messages: "dataset 'p' missing (expected (..) float32)", "dataset 'p' has shape (..),
  // expected (..)", "dataset 'p' has type int32, expected float32".
  Dims check_dataset(const std::string& path, Kind kind, const Dims& expected,
                     const std::string& type_desc) const;

  // Reads a whole numeric dataset into out (count must equal its element count).
  void read(const std::string& path, float* out, size_t count) const;
  void read(const std::string& path, double* out, size_t count) const;
  void read(const std::string& path, int64_t* out, size_t count) const;
  // Reads a hyperslab of a numeric dataset as floats (H5Sselect_hyperslab semantics, one entry
  // per dimension: start, stride, count, block), densely into out in file order. For datasets
  // too large to hold twice, read and rearranged in pieces.
  void read_hyperslab(const std::string& path, const Dims& start, const Dims& stride,
                      const Dims& count, const Dims& block, float* out) const;
  template <class T>
  std::vector<T> read_vector(const std::string& path, Dims* shape = nullptr) const {
    const DatasetInfo info = dataset_info(path);
    require_stored(path);
    size_t n = 1;
    for (int64_t d : info.shape) n *= size_t(d);
    std::vector<T> v(n);
    read(path, v.data(), n);
    if (shape) *shape = info.shape;
    return v;
  }
  std::vector<std::string> read_strings(const std::string& path) const;

  // Writes a new dataset (parents created). shape {} writes a scalar.
  void write(const std::string& path, const float* data, const Dims& shape);
  void write(const std::string& path, const double* data, const Dims& shape);
  void write(const std::string& path, const int64_t* data, const Dims& shape);
  void write_strings(const std::string& path, const std::vector<std::string>& values);

  // ---- attributes of the object at obj ("/" for the root) ----
  bool has_attr(const std::string& obj, const std::string& name) const;
  // Scalar or one-element string attribute (fixed or variable length).
  std::string read_attr_string(const std::string& obj, const std::string& name) const;
  // String array attribute (fixed or variable length, scalar reads as one element).
  std::vector<std::string> read_attr_strings(const std::string& obj, const std::string& name) const;
  std::vector<double> read_attr_doubles(const std::string& obj, const std::string& name) const;
  std::vector<int64_t> read_attr_int64s(const std::string& obj, const std::string& name) const;

  void write_attr_string(const std::string& obj, const std::string& name, const std::string& value);
  void write_attr_strings(const std::string& obj, const std::string& name,
                          const std::vector<std::string>& values);
  // values.size() == 1 writes a scalar attribute, otherwise a 1-D array.
  void write_attr_floats(const std::string& obj, const std::string& name,
                         const std::vector<float>& values);
  void write_attr_doubles(const std::string& obj, const std::string& name,
                          const std::vector<double>& values);
  void write_attr_int64s(const std::string& obj, const std::string& name,
                         const std::vector<int64_t>& values);

 private:
  File(Id file, std::string path, std::string context)
      : file_(std::move(file)), path_(std::move(path)), context_(std::move(context)) {}
  static File open_hdf5(const std::string& path, const std::string& context);
  void read_numeric(const std::string& path, hid_t mem_type, void* out, size_t count) const;
  void write_numeric(const std::string& path, hid_t mem_type, const void* data, const Dims& shape);
  Id open_object(const std::string& obj) const;
  Id open_attr(const std::string& obj, const std::string& name) const;
  // Element count of a numeric attribute after checking its kind.
  size_t attr_count(hid_t attr, const std::string& obj, const std::string& name, Kind want) const;
  void write_attr(const std::string& obj, const std::string& name, hid_t mem_type, const void* data,
                  size_t count);

  Id file_;
  std::string path_;
  std::string context_;
  bool rehearsal_ = false;  // in a probe child: closing this File ends the child (h5_util.cpp)
};

// In a probe child rehearsing a read (preimage/hdf5_probe.h): whether this process is one, and
// ending it ("done": the caller got past every HDF5 read it makes before this point). The child
// sets the core's device-use hook to end_rehearsal, so the CUDA dispatch point ends it.
bool rehearsing();
[[noreturn]] void end_rehearsal();

// The innermost message of HDF5's current error stack ("" when empty), e.g. "No space left on
// device" or "truncated file". Call right after the failing HDF5 call.
std::string last_error();

}  // namespace preimage::h5
