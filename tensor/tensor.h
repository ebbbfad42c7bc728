// Tensor = shared Storage + shape + strides + offset + dtype (+ autograd state).
//
// A Tensor is a cheap handle (a shared_ptr to TensorImpl), like torch.Tensor:
// copying it aliases the same tensor. Views (reshape, transpose, narrow, chunk,
// expand, ...) are new TensorImpls over the same Storage with other strides,
// so they never copy data. The ops themselves live in autograd/ops.h, because
// every op may record a gradient function.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <source_location>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/placement.h"
#include "tensor/storage.h"

namespace ms {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

struct Node;
class Tensor;
using GradHook = std::function<void(Tensor& param)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;

  // Autograd (see autograd/engine.cpp).
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;     // null for leaves
  std::vector<GradHook> grad_hooks;  // leaves only: run once .grad is final for this backward

  // Replicated / sharded / partial per mesh axis (tensor/placement.h).
  Placements placements;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A fresh, uninitialized, contiguous tensor.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  // A view of `base`'s storage with the given geometry (bounds are checked).
  static Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides,
                          int64_t offset);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  const Shape& shape() const { return self().shape; }
  const Shape& strides() const { return self().strides; }
  int64_t dim() const { return static_cast<int64_t>(self().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(self().shape); }
  int64_t offset() const { return self().offset; }
  DType dtype() const { return self().dtype; }
  Device device() const { return self().storage->device(); }
  const std::shared_ptr<Storage>& storage() const { return self().storage; }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  // Pointer to element [0, 0, ...] for HOST code (loops on the CPU, memcpy,
  // MPI buffers); T must match the dtype (float, double, uint16_t, int32_t).
  // An ms::Error for a tensor that does not live on the CPU: a host loop over
  // device memory is the bug this check exists for (on a GPU it would read
  // garbage or segfault; on Device::Sim it is caught in CI).
  template <typename T>
  T* host_data(std::source_location caller = std::source_location::current()) const;
  void* host_raw_data(std::source_location caller = std::source_location::current()) const;
  // The same pointer for any device, for the device's own kernels only: an op
  // passes it to the kernel its device switch chose (tensor/device_kernels.h;
  // docs/architecture.md, "Dispatch on a device"). For a Sim tensor it is an
  // ms::Error outside the KernelScope that switch opens, naming the caller:
  // the forgotten switch a GPU would punish with a host read of device memory.
  template <typename T>
  T* device_data(std::source_location caller = std::source_location::current()) const;
  void* device_raw_data(std::source_location caller = std::source_location::current()) const;

  // This tensor on `device`: itself when already there, else a contiguous
  // copy (for CUDA: cudaMemcpy on the device's stream, finished when this
  // returns; for Sim: a memcpy through the same call sites a GPU needs).
  // Like detach(), the copy is a new leaf: no gradient flows back through it
  // (move parameters and data with it before building the graph). Unlike a
  // view, it keeps the placements (tensor/placement.h): same values, same rank.
  Tensor to(Device device) const;

  // The single value of a one-element tensor, converted to double.
  double item() const;
  // Copies all elements, in logical (row-major) order, converted to double
  // (a CUDA tensor is copied to the host first).
  std::vector<double> to_vector() const;

  // ---- autograd ----
  bool requires_grad() const { return self().requires_grad; }
  Tensor& set_requires_grad(bool on);
  bool is_leaf() const { return self().grad_fn == nullptr; }
  Tensor grad() const { return Tensor(self().grad); }
  void set_grad(const Tensor& g) const { self().grad = g.impl_; }
  void zero_grad() const { self().grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return self().grad_fn; }
  // Runs `hook(this)` when this leaf's gradient is complete during backward().
  // Data parallelism and ZeRO hang their bucket logic on it.
  void register_grad_hook(GradHook hook);
  // Backpropagates from this tensor. A non-scalar needs an explicit `grad`.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  std::string to_string(int max_per_dim = 6) const;

 private:
  Tensor copy_to(Device device) const;  // to()'s transfer, before the placements
  TensorImpl& self() const {
    MS_CHECK(impl_ != nullptr, "use of an undefined (default-constructed) Tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// A raw Storage's bytes (a dropout mask's) under the rules of Tensor's
// host_raw_data() and device_raw_data().
void* host_bytes(const Storage& s, std::source_location caller = std::source_location::current());
void* device_bytes(const Storage& s,
                   std::source_location caller = std::source_location::current());
// A copy of all of `s` on `device`, through Tensor::to's transfers (one of
// the two must be the CPU).
std::shared_ptr<Storage> storage_to(const Storage& s, Device device);

// Normalizes a possibly negative dim for a tensor of rank `ndim`; `op` names the caller.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace ms
