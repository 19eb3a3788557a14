// Helpers for the I/O tests: reading reference tensors through the engine's HDF5 layer, the
// PREIMAGE_TEST_DATA directory, byte files; TempDir (test/temp_dir.h).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/io/h5_util.h"
#include "preimage/tensor.h"
#include "test/temp_dir.h"

namespace preimage::test {

// $PREIMAGE_TEST_DATA (made by test/torch_reference.py), or "" when unset.
inline std::string test_data_dir() {
  const char* d = std::getenv("PREIMAGE_TEST_DATA");
  return d ? std::string(d) : std::string();
}

// A (N,C,H,W) float tensor from a dataset of rank ≤ 4 (missing leading dims are 1).
inline Tensor read_tensor(const h5::File& f, const std::string& path) {
  h5::Dims dims;
  const std::vector<float> v = f.read_vector<float>(path, &dims);
  while (dims.size() < 4) dims.insert(dims.begin(), 1);
  return Tensor::from_vector(Shape{int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3])}, v);
}

inline std::vector<double> read_doubles(const h5::File& f, const std::string& path) {
  return f.read_vector<double>(path);
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace preimage::test
