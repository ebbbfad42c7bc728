// `minispeed train --device cpu|cuda|sim` and ZeRO-Offload's flag: reading
// and checking them, binding each rank to its GPU, moving the model and the
// batches, a host copy of the model for sampling and saving, and the device's
// memory line (docs/architecture.md, "Devices").
#pragma once
#include <memory>
#include <string>

#include "cli/flags.h"
#include "nn/gpt.h"
#include "tensor/device.h"

namespace ms {

// Adds --device and --offload-optimizer to train's flags.
void add_device_flags(Flags& f);
// --device's value, checked: an ms::Error for an unknown name, and for cuda
// in a build without CUDA or on a machine without a GPU (every rank reaches
// the same verdict: the build is the same everywhere; the GPU count is per
// machine, and read_train_config runs under agreed()).
Device read_device_flag(const Flags& flags);

// For cuda: makes GPU (local rank mod visible GPUs) current, one GPU per rank
// as DeepSpeed's launcher does with LOCAL_RANK (Open MPI sets
// OMPI_COMM_WORLD_LOCAL_RANK). Nothing for cpu and sim.
void bind_rank_device(Device device);

// Every parameter of `model` moves to `device`, keeping its identity
// (Module::replace_parameter), before the engine cuts, flattens or wraps it.
void move_model_to(GPT& model, Device device);

// A CPU copy of `model` (same config, dtype and values) for the host-side
// work at the end: sampling reads logits on the host. `model` itself when it
// is already on the CPU.
std::shared_ptr<GPT> host_copy(const std::shared_ptr<GPT>& model);

// The step line's device memory field (" | sim 1.23 MB", " | cuda 1.23 MB
// (peak 2.00)"), read from the device's own counter; "" on the CPU.
std::string device_step_field(Device device);

// One line for the memory table: the device's own counters (sim:
// sim_bytes_allocated; cuda: the caching allocator's), "" on the CPU.
std::string device_memory_line(Device device, int rank);

}  // namespace ms
