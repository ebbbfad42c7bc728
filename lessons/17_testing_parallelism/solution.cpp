// Lesson 17 reference: the placement over tp of every tensor of one GPT-2
// block under tp + sequence parallelism (Korthikanti et al. 2022, Fig. 5:
// the non-GEMM regions hold T/t positions, g is a reduce-scatter, f an
// all-gather). PyTorch DTensor names the same three states Replicate,
// Shard(dim) and Partial.
#include "lessons/17_testing_parallelism/lesson.h"

using ms::Placement;

ms::Placement tp_placement(BlockTensor which) {
  const Placement positions = Placement::sharded(1, 3);  // (B, T/t, C): my T/t positions
  const Placement features = Placement::sharded(-1, 3);  // (B, T, n/t): my heads / columns
  switch (which) {
    // The SP region: per-token ops on this rank's positions.
    case BlockTensor::Input:
    case BlockTensor::Ln1Out:
    case BlockTensor::Residual1:
    case BlockTensor::Ln2Out:
    case BlockTensor::Output:
      return positions;
    // f under SP: all-gather over T, so the GEMM sees every token.
    case BlockTensor::CAttnInput:
      return Placement::replicated();
    // The tp region: column shards, attention on my heads, elementwise GELU.
    case BlockTensor::CAttnOut:
    case BlockTensor::AttnOut:
    case BlockTensor::FcOut:
    case BlockTensor::GeluOut:
      return features;
    // A row-parallel GEMM: my input features times my rows of W.
    case BlockTensor::AttnProjPartial:
    case BlockTensor::MlpProjPartial:
      return Placement::partial();
    // g under SP: reduce-scatter over T — summed, and my positions only.
    case BlockTensor::AttnProjReduced:
    case BlockTensor::MlpProjReduced:
      return positions;
    case BlockTensor::CAttnWeight:
    case BlockTensor::CAttnWeightGrad:  // over all T (the gathered input): complete
      return Placement::sharded(-1, 2);
    case BlockTensor::CAttnBias:
      return Placement::sharded(0, 1);
    case BlockTensor::AttnProjWeight:
    case BlockTensor::AttnProjWeightGrad:
      return Placement::sharded(0, 2);
    // Added once, after the reduction; LayerNorm rows are whole C.
    case BlockTensor::AttnProjBias:
    case BlockTensor::Ln1Weight:
      return Placement::replicated();
    // Under SP they saw only my T/t positions: a sum over tp is still owed.
    case BlockTensor::AttnProjBiasGrad:
    case BlockTensor::Ln1WeightGrad:
      return Placement::partial();
  }
  return Placement::unknown();
}
