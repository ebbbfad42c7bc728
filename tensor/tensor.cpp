#include "tensor/tensor.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include "tensor/cpu/elementwise.h"
#include "tensor/device_kernels.h"
#include "tensor/placement.h"
#ifdef MS_CUDA
#include "tensor/cuda/runtime.h"
#endif

namespace ms {

void assert_fail(const char* cond, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "minispeed internal error: %s:%d: assertion `%s` failed %s\n", file, line,
               cond, msg.c_str());
  std::abort();
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  MS_CHECK(dim >= lo && dim <= hi, op, ": dim ", dim, " is out of range for a tensor of rank ",
           ndim, " (valid: ", lo, "..", hi, ")");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) MS_CHECK(d >= 0, "empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::make_view(const Tensor& base, const Shape& shape, const Shape& strides,
                         int64_t offset) {
  MS_CHECK(shape.size() == strides.size(), "make_view: shape ", shape_str(shape), " and strides ",
           shape_str(strides), " differ in rank");
  // The view must stay inside the storage: check the lowest and highest element touched.
  int64_t lo = offset, hi = offset;
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) empty = true;
    int64_t span = (shape[i] - 1) * strides[i];
    (span < 0 ? lo : hi) += span;
  }
  int64_t capacity = static_cast<int64_t>(base.storage()->nbytes() / dtype_size(base.dtype()));
  MS_CHECK(empty || (lo >= 0 && hi < capacity), "make_view: shape ", shape_str(shape), " strides ",
           shape_str(strides), " offset ", offset, " reaches outside the storage's ", capacity,
           " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  return strides()[wrap_dim(d, dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

namespace {

// ", in FUNCTION (FILE:LINE)[, during OP]" for the access errors.
std::string access_site(const std::source_location& caller) {
  std::string s = str_cat(", in ", caller.function_name(), " (", caller.file_name(), ":",
                          caller.line(), ")");
  if (const char* op = OpLabel::current()) s += str_cat(", during ", op);
  return s;
}

}  // namespace

namespace {

void check_device_access(Device device, const std::string& what,
                         const std::source_location& caller) {
  MS_CHECK(device != Device::Sim || KernelScope::active() != nullptr,
           "device access to a sim ", what, " outside an op's device switch", access_site(caller),
           ": an op handed a device tensor to a kernel (or a host loop) without its device "
           "switch; on a GPU this reads device memory from the host (see "
           "tensor/device_kernels.h; docs/architecture.md, \"Dispatch on a device\")");
}
void check_host_access(Device device, const std::string& what,
                       const std::source_location& caller) {
  MS_CHECK(device == Device::CPU, "host access to a ", device_name(device), " ", what,
           access_site(caller),
           ": host code may read only CPU tensors; copy it with to(Device::CPU) first, or run "
           "the device kernel (docs/architecture.md, \"Devices\")");
}

}  // namespace

void* Tensor::device_raw_data(std::source_location caller) const {
  if (device() == Device::Sim)
    check_device_access(device(), str_cat("tensor ", dtype_name(dtype()), " ", shape_str(shape())),
                        caller);
  return static_cast<char*>(storage()->data()) + offset() * dtype_size(dtype());
}

void* Tensor::host_raw_data(std::source_location caller) const {
  if (device() != Device::CPU)
    check_host_access(device(), str_cat("tensor ", dtype_name(dtype()), " ", shape_str(shape())),
                      caller);
  return static_cast<char*>(storage()->data()) + offset() * dtype_size(dtype());
}

void* host_bytes(const Storage& s, std::source_location caller) {
  if (s.device() != Device::CPU)
    check_host_access(s.device(), str_cat("buffer of ", s.nbytes(), " bytes"), caller);
  return s.data();
}
void* device_bytes(const Storage& s, std::source_location caller) {
  if (s.device() == Device::Sim)
    check_device_access(s.device(), str_cat("buffer of ", s.nbytes(), " bytes"), caller);
  return s.data();
}

template <typename T>
static constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  if constexpr (std::is_same_v<T, double>) return DType::F64;
  if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  return DType::BF16;
}

template <typename T>
static void check_element_type(DType dtype, const char* accessor) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    MS_CHECK(dtype == DType::BF16 || dtype == DType::F16, accessor, "<uint16_t>: tensor is ",
             dtype_name(dtype), ", expected bf16 or f16");
  } else {
    MS_CHECK(dtype == dtype_of<T>(), accessor, "<", dtype_name(dtype_of<T>()), ">: tensor is ",
             dtype_name(dtype));
  }
}

template <typename T>
T* Tensor::host_data(std::source_location caller) const {
  check_element_type<T>(dtype(), "host_data");
  return static_cast<T*>(host_raw_data(caller));
}
template <typename T>
T* Tensor::device_data(std::source_location caller) const {
  check_element_type<T>(dtype(), "device_data");
  return static_cast<T*>(device_raw_data(caller));
}
#define MS_INSTANTIATE(T)                                            \
  template T* Tensor::host_data<T>(std::source_location) const; \
  template T* Tensor::device_data<T>(std::source_location) const;
MS_INSTANTIATE(float)
MS_INSTANTIATE(double)
MS_INSTANTIATE(uint16_t)
MS_INSTANTIATE(int32_t)
#undef MS_INSTANTIATE

namespace {

// Bytes between host memory and a device's memory. Sim's memory is host
// memory, so its "transfer" is a memcpy; CUDA's is a cudaMemcpy on the
// device's stream that has finished when this returns.
void copy_to_device(void* dst, const void* src, size_t n, const Storage& dst_storage) {
  if (dst_storage.device() == Device::Sim) {
    if (n) std::memcpy(dst, src, n);
    return;
  }
#ifdef MS_CUDA
  cuda::copy_to_device(dst, src, n, dst_storage.device_index());
#else
  MS_CHECK(false, "to(cuda): this build has no CUDA backend (build with make CUDA=1; see README, "
           "\"GPU\")");
#endif
}
void copy_to_host(void* dst, const void* src, size_t n, const Storage& src_storage) {
  if (src_storage.device() == Device::Sim) {
    if (n) std::memcpy(dst, src, n);
    return;
  }
#ifdef MS_CUDA
  cuda::copy_to_host(dst, src, n, src_storage.device_index());
#else
  MS_CHECK(false, "to(cpu) of a cuda tensor in a build without CUDA");
#endif
}

}  // namespace

std::shared_ptr<Storage> storage_to(const Storage& s, Device target) {
  auto out = std::make_shared<Storage>(s.nbytes(), target);
  if (s.device() == target) {
    MS_CHECK(target == Device::CPU, "storage_to: a device-to-device copy of a ",
             device_name(target), " buffer is not supported; go through the CPU");
    if (s.nbytes()) std::memcpy(out->data(), s.data(), s.nbytes());
  } else if (s.device() == Device::CPU) {
    copy_to_device(out->data(), s.data(), s.nbytes(), *out);
  } else {
    MS_CHECK(target == Device::CPU, "storage_to(", device_name(target), "): a ",
             device_name(s.device()), " buffer moves to another device through the CPU");
    copy_to_host(out->data(), s.data(), s.nbytes(), s);
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  if (device() == target) return *this;
  Tensor out = copy_to(target);
  // The same values on the same rank, elsewhere: the copy keeps how they are
  // laid out across ranks (a shard moved to the host is still a shard, and a
  // whole-model save must still refuse it).
  copy_placements(out, *this);
  return out;
}

Tensor Tensor::copy_to(Device target) const {
  // The transfer is this device's own copy: it may take device pointers.
  KernelScope scope("to", device() == Device::CPU ? target : device());
  MS_CHECK(device() == Device::CPU || target == Device::CPU, "to(", device_name(target), "): a ",
           device_name(device()),
           " tensor moves to another device through the CPU: call to(Device::CPU) first");
  if (target != Device::CPU) {
    // Pack on the host (cpu::copy walks any strides), then one transfer.
    Tensor src = *this;
    if (!is_contiguous()) {
      src = Tensor::empty(shape(), dtype());
      cpu::copy(*this, src);
    }
    Tensor out = Tensor::empty(shape(), dtype(), target);
    copy_to_device(out.device_raw_data(), src.host_raw_data(), nbytes(), *out.storage());
    return out;
  }
  // Device -> host. A strided view may skip bytes: copy the span it covers
  // into a host buffer, view it there with the same strides, then pack.
  if (is_contiguous()) {
    Tensor out = Tensor::empty(shape(), dtype());
    copy_to_host(out.host_raw_data(), device_raw_data(), nbytes(), *storage());
    return out;
  }
  int64_t lo = 0, hi = 0;
  for (int64_t i = 0; i < dim(); ++i) {
    if (shape()[i] == 0) return Tensor::empty(shape(), dtype());
    int64_t span = (shape()[i] - 1) * strides()[i];
    (span < 0 ? lo : hi) += span;
  }
  Tensor span = Tensor::empty({hi - lo + 1}, dtype());
  copy_to_host(span.host_raw_data(),
               static_cast<char*>(device_raw_data()) + lo * static_cast<int64_t>(dtype_size(dtype())),
               static_cast<size_t>(hi - lo + 1) * dtype_size(dtype()), *storage());
  Tensor view = Tensor::make_view(span, shape(), strides(), -lo);
  Tensor out = Tensor::empty(shape(), dtype());
  cpu::copy(view, out);
  return out;
}

std::vector<double> Tensor::to_vector() const {
  if (device() != Device::CPU) return to(Device::CPU).to_vector();
  // The strided walk and the dtype decoding are cpu::copy's; copy into f64.
  Tensor f64 = Tensor::empty(shape(), DType::F64);
  cpu::copy(*this, f64);
  const double* p = f64.host_data<double>();
  return std::vector<double>(p, p + numel());
}

double Tensor::item() const {
  MS_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()), " has ", numel(),
           " elements; item() needs exactly one");
  return to_vector()[0];
}

Tensor& Tensor::set_requires_grad(bool on) {
  MS_CHECK(is_leaf(),
           "set_requires_grad: only leaf tensors can change requires_grad; "
           "use detach() to get a leaf");
  MS_CHECK(!on || is_float_dtype(dtype()), "set_requires_grad: dtype ", dtype_name(dtype()),
           " cannot carry gradients; they need a float dtype (f32, f64, bf16, f16)");
  self().requires_grad = on;
  return *this;
}

void Tensor::register_grad_hook(GradHook hook) {
  MS_CHECK(is_leaf() && requires_grad(),
           "register_grad_hook: only leaf tensors that require grad have gradient hooks");
  self().grad_hooks.push_back(std::move(hook));
}

static void format_number(std::ostringstream& os, double v) {
  char buf[32];
  if (std::isnan(v) || std::isinf(v) || v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%g", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4f", v);
  }
  os << buf;
}

// Prints like numpy: nested brackets, at most `max_per_dim` items per dim with "...".
static void format_rec(std::ostringstream& os, const std::vector<double>& v, const Shape& shape,
                       size_t d, int64_t base, int64_t stride_of_dim, int max_per_dim, int indent) {
  if (d == shape.size()) {
    format_number(os, v[base]);
    return;
  }
  int64_t n = shape[d], inner = stride_of_dim / std::max<int64_t>(n, 1);
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      os << "...";
      i = n - max_per_dim / 2 - 1;
      os << (d + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
      continue;
    }
    format_rec(os, v, shape, d + 1, base + i * inner, inner, max_per_dim, indent + 1);
    if (i + 1 < n) os << (d + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << "]";
}

std::string Tensor::to_string(int max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(";
  std::vector<double> v = to_vector();
  format_rec(os, v, shape(), 0, 0, numel(), max_per_dim, 7);
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.to_string();
}

}  // namespace ms
