// The article's programming question — "write a simple distributed training
// program with DeepSpeed's basic strategy" — answered with minispeed's engine
// and a real ds_config.json (lessons/03_training_loop/README.md shows it
// beside the real DeepSpeed Python). The article's version called
// DeepSpeedEngine(model, criterion, config) with made-up parallelism keys; in
// DeepSpeed (and here) initialize() builds the engine from the model and the
// config, the loss is the caller's, and the parallel layout comes from the
// config's sections and the number of ranks.
//
//   make build/examples/engine_train
//   mpirun -np 2 build/examples/engine_train                      # examples/ds_config.json
//   mpirun -np 4 build/examples/engine_train configs/3d.json 20   # tp 2 × pp 2
//
// One difference from the article: the model is a small GPT on Shakespeare's
// bytes rather than Linear(10, 1), because the engine cuts a GPT for tensor
// and pipeline parallelism (it knows its embedding, blocks and head).
#include <cstdio>
#include <string>

#include "nn/data.h"
#include "nn/gpt.h"
#include "parallel/comm/runtime.h"
#include "parallel/engine/config.h"
#include "parallel/engine/engine.h"

int main(int argc, char** argv) {
  return ms::run_distributed(argc, argv, [&](ms::Communicator& world) {
    const std::string config_path = argc > 1 ? argv[1] : "examples/ds_config.json";
    const int64_t steps = argc > 2 ? std::stoll(argv[2]) : 50;
    const int64_t T = 64;  // tokens per sequence

    // The config, resolved for this job: dp = ranks / (tp × pp), and
    // DeepSpeed's rule train_batch_size = micro × gas × dp checked.
    ms::DsConfig config = ms::load_ds_config_for_ranks(config_path, world.size());
    if (world.rank() == 0) std::printf("%s", ms::describe(config).c_str());

    // Every rank builds the same model (same seed); initialize cuts it for
    // tensor and pipeline parallelism and hands ZeRO this rank's share.
    ms::GPTConfig shape;
    shape.n_layer = 4, shape.n_head = 4, shape.n_embd = 64, shape.block_size = T;
    auto model = std::make_shared<ms::GPT>(shape, 1337);
    ms::InitOptions options;
    options.seq_len = T;
    auto [engine, optimizer, lr_scheduler] = ms::initialize(model, config, world, options);

    // Data-parallel rank r of D reads window k·D + r at micro-step k; the
    // tp and pp ranks of a replica read the same windows.
    ms::TokenData data = ms::TokenData::load("data/tinyshakespeare.txt");
    ms::Mesh& mesh = engine.mesh();
    const int64_t B = engine.train_micro_batch_size_per_gpu();
    int64_t window = 0;
    auto next_batch = [&] {
      return data.train_batch(window++, mesh.dp_rank(), mesh.dp_size(), B, T);
    };

    while (engine.global_steps() < steps) {
      const double lr = engine.get_lr();
      double loss_value = 0;
      if (engine.pipeline()) {
        // A pipeline runs a whole step of micro-batches through its schedule.
        loss_value = engine.train_batch(next_batch);
      } else {
        // DeepSpeed's loop: step() after every micro-batch; the update (and
        // the gradient all-reduce in backward) only on the last of
        // gradient_accumulation_steps.
        do {
          ms::Batch b = next_batch();
          ms::Tensor loss = engine.forward(b.x, b.y);  // the loss is the model's cross-entropy
          loss_value = loss.item();
          engine.backward(loss);  // scaled by 1 / gradient_accumulation_steps
          engine.step();
        } while (engine.micro_steps() % engine.gradient_accumulation_steps() != 0);
      }
      if (world.rank() == 0 && (engine.global_steps() % 10 == 0 || engine.global_steps() == 1))
        std::printf("step %3lld | loss %.4f (%s) | lr %.2e | grad norm %.3f\n",
                    static_cast<long long>(engine.global_steps()), loss_value,
                    engine.pipeline() ? "the global batch's" : "rank 0's last micro-batch", lr,
                    engine.last_grad_norm());
    }
    if (world.rank() == 0)
      std::printf("trained %lld steps with %s (%s), lr now %.2e\n",
                  static_cast<long long>(engine.global_steps()), optimizer.name().c_str(),
                  lr_scheduler.name().c_str(), optimizer.lr());
    return 0;
  });
}
