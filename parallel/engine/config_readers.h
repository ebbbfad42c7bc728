// The optimizer and scheduler sections of ds_config.json, read by
// parallel/engine/config.cpp (internal to parallel/engine/).
#pragma once
#include "parallel/engine/config.h"
#include "parallel/engine/json_reader.h"

namespace ms::engine {

// DeepSpeed's "optimizer": {"type", "params"} (engine.py::_configure_basic_optimizer).
DsOptimizerConfig read_optimizer(Section s);
// DeepSpeed's "scheduler": {"type", "params"} (deepspeed/runtime/lr_schedules.py);
// records in c.derived what it fills in from c.optimizer.
LRScheduleConfig read_scheduler(Section s, DsConfig& c);

}  // namespace ms::engine
