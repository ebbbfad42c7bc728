#include "tensor/factory.h"

#include <cmath>
#include <cstring>

#include "tensor/cpu/elementwise.h"
#include "tensor/device_kernels.h"

namespace ms {

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  KernelScope scope("full", device);
  dk::fill(device, t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  if (device == Device::CPU) {
    std::memset(t.host_raw_data(), 0, t.nbytes());
  } else {
    KernelScope scope("zeros", device);
    dk::fill(device, t, 0.0);
  }
  return t;
}
Tensor ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor zeros_like(const Tensor& t) {
  return zeros(t.shape(), t.dtype(), t.device());
}
Tensor ones_like(const Tensor& t) {
  return ones(t.shape(), t.dtype(), t.device());
}

Tensor arange(int64_t n, DType dtype) {
  return arange(0, static_cast<double>(n), 1, dtype);
}

Tensor arange(double start, double end, double step, DType dtype) {
  MS_CHECK(step != 0, "arange: step must be non-zero");
  double count = std::ceil((end - start) / step);
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_vector(v, {n}, dtype);
}

Tensor randn(const Shape& shape, Generator& gen, double mean, double std, DType dtype) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = mean + std * gen.normal();
  return from_vector(v, shape, dtype);
}

Tensor uniform(const Shape& shape, Generator& gen, double low, double high, DType dtype) {
  MS_CHECK(low <= high, "uniform: low ", low, " must not exceed high ", high);
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = low + (high - low) * gen.uniform();
  return from_vector(v, shape, dtype);
}

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  MS_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "from_vector: ", values.size(), " values cannot fill shape ", shape_str(shape), " (",
           shape_numel(shape), " elements)");
  Tensor src = Tensor::empty(shape, DType::F64);
  if (!values.empty()) std::memcpy(src.host_raw_data(), values.data(), values.size() * sizeof(double));
  if (dtype == DType::F64) return src;
  Tensor out = Tensor::empty(shape, dtype);
  cpu::copy(src, out);
  return out;
}

// Values already in the tensor's element type: one memcpy.
template <typename T>
static Tensor from_native(const std::vector<T>& values, const Shape& shape, DType dtype) {
  MS_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "from_vector: ", values.size(), " values cannot fill shape ", shape_str(shape));
  Tensor out = Tensor::empty(shape, dtype);
  if (!values.empty()) std::memcpy(out.host_raw_data(), values.data(), values.size() * sizeof(T));
  return out;
}

Tensor from_vector(const std::vector<float>& values, const Shape& shape) {
  return from_native(values, shape, DType::F32);
}

Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape) {
  return from_native(values, shape, DType::I32);
}

}  // namespace ms
