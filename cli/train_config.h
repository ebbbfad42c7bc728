// `minispeed train`'s flags, read and checked before anything runs: every
// number in range, every product of sizes without overflow, and the model's
// memory against the machine's (cli/train_memory_check.h), so a bad run fails
// in a second with a message instead of training NaN, crashing, or being
// OOM-killed minutes later.
#pragma once
#include <cstdint>
#include <string>

#include "cli/flags.h"
#include "nn/gpt.h"
#include "parallel/comm/communicator.h"
#include "parallel/zero/mixed_precision.h"

namespace ms {

Flags train_flags();

struct TrainConfig {
  std::string data, init_from, save_weights, optimizer, schedule;
  GPTConfig model;  // from --n-layer/--n-head/--n-embd/--seq-len/--dropout (a fresh model)
  int64_t B = 0, T = 0, accum = 0, steps = 0, warmup = 0;
  int64_t eval_every = 0, eval_batches = 0, sample_every = 0, sample_tokens = 0;
  int64_t zero_stage = 0, log_every = 1, seed = 0;
  int64_t tp = 1, dp = 1;              // --tp, and the data-parallel replicas ranks / (tp · pp · cp)
  int64_t pp = 1, virtual_stages = 1;  // --pp, --virtual-stages
  int64_t ep = 1;                      // --ep: experts split over ep dp ranks (parallel/ep/)
  int64_t cp = 1;                      // --cp: context-parallel ranks per replica
  std::string cp_algo = "ulysses";     // --cp-algo: ulysses | ring | zigzag | allgather
  std::string pipe_schedule;           // --pipe-schedule: gpipe | 1f1b | interleaved
  std::string timeline;                // --timeline: the measured pipeline as SVG
  bool sequence_parallel = false;
  bool checkpoint_activations = false;  // --checkpoint-activations: wrap every block
  double lr = 0, min_lr = 0, momentum = 0, beta1 = 0, beta2 = 0, weight_decay = 0;
  double grad_clip = 0, dropout = 0, attn_dropout = 0;
  int64_t tokens_per_step = 0;  // B·T·accum·dp (the cp ranks of a replica share its sequences)
  MixedPrecision precision;     // --bf16 / --fp16 and the loss-scale flags
  Device device = Device::CPU;  // --device (ds_config "device"): cli/train_device.h
  bool offload_optimizer = false;  // --offload-optimizer: ZeRO-Offload

  // Checkpoints (parallel/engine/checkpoint.h).
  int64_t save_every = 0;              // --save-every
  std::string checkpoint_dir, resume;  // --checkpoint-dir, --resume: latest | TAG
};

// Reads and checks every flag for a job of `ranks` ranks; throws ms::Error
// naming the flag, its value and the valid range. Pure: the same flags give
// the same outcome on every rank. Touches no files.
TrainConfig read_train_config(const Flags& flags, int64_t ranks);

// Parameters of a GPT with this config (tied input/output embedding), or an
// ms::Error if the count overflows int64.
int64_t gpt_parameter_count(const GPTConfig& cfg);

}  // namespace ms
