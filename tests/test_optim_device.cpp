// The optimizer's device path (optim/kernels.h) on the simulated device: an
// AdamW or SGD step, the clipping norm and the overflow test on Device::Sim
// equal the CPU's bit for bit (Sim runs the cpu:: kernels through the device
// switch), the state lives on the parameters' device, and no host code reads
// device memory on the way (host_data would throw).
#include <cstring>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "optim/kernels.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "parallel/zero/mixed_precision.h"
#include "tensor/factory.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

// Three parameters of awkward sizes (one above AdamW's 16K chunk), with
// gradients, on `device`; the same numbers on every device.
std::vector<Tensor> make_params(Device device) {
  Generator gen(7);
  std::vector<Tensor> ps;
  for (int64_t n : {int64_t(5), int64_t(70000), int64_t(33)}) {
    Tensor p = randn({n}, gen).to(device);
    p.set_requires_grad(true);
    p.set_grad(randn({n}, gen).to(device));
    ps.push_back(p);
  }
  return ps;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.to(Device::CPU), y = b.to(Device::CPU);
  return x.nbytes() == y.nbytes() &&
         std::memcmp(x.host_raw_data(), y.host_raw_data(), x.nbytes()) == 0;
}

template <typename MakeOpt>
void check_steps_equal(MakeOpt make) {
  std::vector<Tensor> cpu = make_params(Device::CPU), sim = make_params(Device::Sim);
  auto oc = make(cpu);
  auto os = make(sim);
  for (int step = 0; step < 3; ++step) {
    oc->step();
    os->step();
  }
  for (size_t i = 0; i < cpu.size(); ++i) {
    CHECK(sim[i].device() == Device::Sim);
    CHECK(bitwise_equal(cpu[i], sim[i]));
  }
  for (const auto& [name, states] : os->state_tensors())
    for (const Tensor& s : states) CHECK(s.device() == Device::Sim);
}

}  // namespace

TEST_CASE("AdamW on the simulated device equals the CPU step bit for bit", "[optim][device]") {
  check_steps_equal([](std::vector<Tensor> ps) {
    return std::make_unique<AdamW>(std::move(ps), 1e-2, 0.9, 0.95, 1e-8, 0.1);
  });
}

TEST_CASE("SGD with momentum on the simulated device equals the CPU step", "[optim][device]") {
  check_steps_equal(
      [](std::vector<Tensor> ps) { return std::make_unique<SGD>(std::move(ps), 0.1, 0.9, 0.01); });
  check_steps_equal(
      [](std::vector<Tensor> ps) { return std::make_unique<SGD>(std::move(ps), 0.1); });
}

TEST_CASE("the clipping norm and the overflow test run on the simulated device",
          "[optim][device]") {
  std::vector<Tensor> cpu = make_params(Device::CPU), sim = make_params(Device::Sim);
  CHECK(grad_sq_norm(sim) == grad_sq_norm(cpu));
  std::vector<Tensor> grads;
  for (const Tensor& p : sim) grads.push_back(p.grad());
  CHECK_FALSE(has_overflow(grads));
  // An inf planted in the middle of a Sim gradient (through the CPU, as data
  // reaches a device) is seen by the device kernel, in every float dtype.
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    INFO(dtype_name(dt));
    std::vector<double> v(1000, 0.5);
    v[517] = std::numeric_limits<double>::infinity();
    Tensor bad = from_vector(v, {1000}, dt).to(Device::Sim);
    CHECK(optim_kernels::has_nonfinite(bad));
    v[517] = std::numeric_limits<double>::quiet_NaN();
    CHECK(optim_kernels::has_nonfinite(from_vector(v, {1000}, dt).to(Device::Sim)));
    v[517] = 0.25;
    CHECK_FALSE(optim_kernels::has_nonfinite(from_vector(v, {1000}, dt).to(Device::Sim)));
  }
}

TEST_CASE("optimizer state is zeroed on the parameters' device", "[optim][device]") {
  Tensor z = optim_kernels::zeros_on({3, 4}, DType::F32, Device::Sim);
  CHECK(z.device() == Device::Sim);
  for (double x : z.to_vector()) CHECK(x == 0);
  // The host may not read it directly: the check this path is built around.
  CHECK_THROWS_WITH(z.host_data<float>(), Catch::Contains("host access to a sim tensor"));
}

TEST_CASE("ZeRO-Offload's masters: gradients come down, parameters go up, bytes counted",
          "[optim][device][offload]") {
  // The model side on the simulated device (f32, as an fp32 offload run),
  // the masters and an AdamW over them on the CPU.
  std::vector<Tensor> cpu = make_params(Device::CPU), sim = make_params(Device::Sim);
  MasterWeights host(sim, Device::CPU);
  for (const Tensor& m : host.masters()) CHECK(m.device() == Device::CPU);
  AdamW on_host(host.masters(), 1e-2);
  AdamW on_cpu(cpu, 1e-2);
  int64_t n = 0;
  for (const Tensor& p : sim) n += p.numel();
  for (int step = 1; step <= 2; ++step) {
    host.load_grads();
    CHECK(host.transfer_bytes().d2h == step * 4 * n);  // fp32 gradients, D2H
    on_host.step();
    on_cpu.step();
    host.store_params();
    CHECK(host.transfer_bytes().h2d == step * 4 * n);  // fp32 parameters, H2D
    host.drop_grads();
  }
  // The device's parameters took the CPU optimizer's values, bit for bit.
  for (size_t i = 0; i < sim.size(); ++i) {
    CHECK(sim[i].device() == Device::Sim);
    CHECK(bitwise_equal(sim[i], cpu[i]));
  }
  // Without offload nothing moves.
  std::vector<Tensor> again = make_params(Device::CPU);
  MasterWeights same_device(again, Device::CPU);
  same_device.load_grads();
  CHECK(same_device.transfer_bytes().d2h == 0);
}
