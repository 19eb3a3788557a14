// Tensor storage: Buffer allocates through backend(device), so device memory is only ever
// allocated in the backends (kernels/runtime.cu for CUDA).
#include "preimage/tensor.h"

#include <vector>

#include "engine/core/backend.h"
#include "preimage/error.h"

namespace preimage {

std::string Shape::str() const {
  return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" +
         std::to_string(w);
}

Buffer::Buffer(size_t count, Device device) : size_(count), device_(device) {
  data_ = backend(device).alloc(count);
}
Buffer::~Buffer() {
  release();
}
Buffer::Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_), device_(o.device_) {
  o.data_ = nullptr;
  o.size_ = 0;
}
Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    device_ = o.device_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}
void Buffer::release() {
  if (data_) backend(device_).free(data_);
  data_ = nullptr;
  size_ = 0;
}

View View::batch(int first, int count) const {
  require(first >= 0 && count >= 0 && first + count <= shape.n,
          "batch view [" + std::to_string(first) + ", " + std::to_string(first + count) +
              ") outside a tensor of shape " + shape.str());
  Shape s = shape;
  s.n = count;
  return View{data + size_t(first) * shape.c * shape.plane(), s, device};
}

static void check_dims(const Shape& s) {
  require(s.n >= 0 && s.c >= 0 && s.h >= 0 && s.w >= 0,
          "tensor shape " + s.str() + ": dimensions must be non-negative");
}

Tensor::Tensor(Shape shape, Device device) : shape_(shape) {
  check_dims(shape);
  buf_ = Buffer(shape.numel(), device);
}

Tensor Tensor::zeros(Shape shape, Device device) {
  return full(shape, 0.f, device);
}

Tensor Tensor::full(Shape shape, float value, Device device) {
  Tensor t(shape, device);
  if (t.numel()) backend(device).fill(t.data(), value, t.numel());
  return t;
}

Tensor Tensor::from_host(Shape shape, const float* values, Device device) {
  Tensor t(shape, device);
  if (t.numel()) backend(device).copy_from_host(t.data(), values, t.numel());
  return t;
}

Tensor Tensor::from_vector(Shape shape, const std::vector<float>& values, Device device) {
  require(values.size() == shape.numel(), "Tensor::from_vector: " + std::to_string(values.size()) +
                                              " values for shape " + shape.str());
  return from_host(shape, values.data(), device);
}

static void copy_between(float* dst, Device dd, const float* src, Device sd, size_t n) {
  if (n == 0) return;
  if (dd == sd) {
    backend(dd).copy(dst, src, n);
  } else if (sd == Device::CPU) {
    backend(dd).copy_from_host(dst, src, n);
  } else if (dd == Device::CPU) {
    backend(sd).copy_to_host(dst, src, n);
  } else {
    std::vector<float> host(n);
    backend(sd).copy_to_host(host.data(), src, n);
    backend(dd).copy_from_host(dst, host.data(), n);
  }
}

Tensor Tensor::to(Device device) const {
  Tensor t(shape_, device);
  copy_between(t.data(), device, data(), this->device(), numel());
  return t;
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> v(numel());
  copy_between(v.data(), Device::CPU, data(), device(), numel());
  return v;
}

void Tensor::copy_from(const View& src) {
  require(src.numel() == numel(),
          "Tensor::copy_from: " + src.shape.str() + " into " + shape_.str());
  copy_between(data(), device(), src.data, src.device, numel());
}

Tensor Tensor::reshaped(Shape shape) && {
  require(shape.numel() == numel(),
          "reshape " + shape_.str() + " → " + shape.str() + ": element counts differ");
  Tensor t;
  t.buf_ = std::move(buf_);
  t.shape_ = shape;
  shape_ = Shape{};
  return t;
}

View view_of(const Tensor& t) {
  return t.view();
}

void check_shape(const Shape& got, const Shape& expected, const std::string& what) {
  require(got == expected, what + ": expected shape " + expected.str() + ", got " + got.str());
}

}  // namespace preimage

namespace preimage {

void copy_view(const View& src, const View& dst) {
  require(src.numel() == dst.numel(), "copy_view: " + src.shape.str() + " into " + dst.shape.str());
  copy_between(dst.data, dst.device, src.data, src.device, src.numel());
}

}  // namespace preimage
