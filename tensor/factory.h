// Tensor factories. Random ones take an explicit Generator (no hidden global
// seed), so every run with the same seed produces the same numbers.
#pragma once
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ms {

// On `device` (filled there by its fill kernel, tensor/device_kernels.h).
Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
            Device device = Device::CPU);
Tensor arange(int64_t n, DType dtype = DType::F32);  // 0, 1, ..., n-1
Tensor arange(double start, double end, double step, DType dtype = DType::F32);
Tensor randn(const Shape& shape, Generator& gen, double mean = 0, double std = 1,
             DType dtype = DType::F32);
Tensor uniform(const Shape& shape, Generator& gen, double low = 0, double high = 1,
               DType dtype = DType::F32);
// The random factories and from_vector make CPU tensors (values come from the
// host); move them with to(Device).
// A tensor holding `values` (row-major) with `shape`; sizes must agree.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::F32);
// Literal lists, e.g. from_vector({1.0, 2.0}, {2}); without this overload the
// braces would be ambiguous between the vector overloads.
inline Tensor from_vector(std::initializer_list<double> values, const Shape& shape,
                          DType dtype = DType::F32) {
  return from_vector(std::vector<double>(values), shape, dtype);
}
Tensor from_vector(const std::vector<float>& values, const Shape& shape);
Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape);
// Same shape, dtype and device as t.
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

}  // namespace ms
