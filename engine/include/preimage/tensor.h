// Tensor: float32 NCHW storage on one device. Storage is owned and move-only (Buffer); copies
// between devices are explicit (to()). Ops take non-owning Views, so batch slices cost nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "preimage/device.h"

namespace preimage {

struct Shape {
  int n = 0, c = 0, h = 0, w = 0;
  size_t numel() const { return size_t(n) * c * h * w; }
  size_t plane() const { return size_t(h) * w; }
  bool operator==(const Shape&) const = default;
  std::string str() const;  // "1x3x67x93"
};

// Move-only owning allocation on a device. The only place device memory is allocated or freed
// (through the backend's allocator).
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t count, Device device);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* data() const { return data_; }
  size_t size() const { return size_; }
  Device device() const { return device_; }

 private:
  void release();
  float* data_ = nullptr;
  size_t size_ = 0;
  Device device_ = Device::CPU;
};

// Non-owning window onto tensor memory: what backend ops receive.
struct View {
  float* data = nullptr;
  Shape shape;
  Device device = Device::CPU;
  size_t numel() const { return shape.numel(); }
  View batch(int first, int count = 1) const;  // images [first, first+count)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, Device device = Device::CPU);  // uninitialized
  static Tensor zeros(Shape shape, Device device = Device::CPU);
  static Tensor full(Shape shape, float value, Device device = Device::CPU);
  static Tensor from_host(Shape shape, const float* values, Device device = Device::CPU);
  static Tensor from_vector(Shape shape, const std::vector<float>& values,
                            Device device = Device::CPU);

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  const Shape& shape() const { return shape_; }
  Device device() const { return buf_.device(); }
  size_t numel() const { return shape_.numel(); }
  bool empty() const { return numel() == 0; }
  float* data() { return buf_.data(); }
  const float* data() const { return buf_.data(); }

  View view() const { return View{buf_.data(), shape_, buf_.device()}; }
  View batch(int first, int count = 1) const { return view().batch(first, count); }

  Tensor to(Device device) const;  // explicit copy (also CPU→CPU)
  Tensor clone() const { return to(device()); }
  std::vector<float> to_vector() const;  // copies to host
  void copy_from(const View& src);       // same numel, any devices
  // Same storage, new shape with equal numel (e.g. flatten). Throws Error otherwise.
  Tensor reshaped(Shape shape) &&;

 private:
  Buffer buf_;
  Shape shape_;
};

View view_of(const Tensor& t);

// Copies src into dst (equal element counts; any devices).
void copy_view(const View& src, const View& dst);

// Throws Error("<what>: expected shape A, got B") when shapes differ.
void check_shape(const Shape& got, const Shape& expected, const std::string& what);

}  // namespace preimage
