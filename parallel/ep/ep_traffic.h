// What expert parallelism sends, for the ledger lines (parallel/comm/ledger.h):
// per MoE layer and micro-step, four all-to-alls of the (E, capacity, C)
// buffer — dispatch and combine forward, their gradients backward — each
// sending every block but the rank's own: E·capacity·C·bytes·(P−1)/P. With
// dropping, capacity ≈ k·tokens/E·capacity_factor, so one all-to-all is about
// tokens·k·capacity_factor·C·bytes·(P−1)/P; the exact capacity is the gate's
// (moe_capacity's ceil and min_capacity, or the ep group's largest load).
#pragma once
#include <cstdint>
#include <string>

namespace ms {

// Bytes one rank sends in one all-to-all of an (E, capacity, C) buffer.
int64_t ep_all_to_all_bytes(int64_t experts, int64_t capacity, int64_t C, int64_t elem, int P);
// Four of them: one MoE layer's forward and backward.
int64_t ep_layer_bytes(int64_t experts, int64_t capacity, int64_t C, int64_t elem, int P);
// "4 × E·capacity·C·4·(P−1)/P = 4 × 4·12·32·4·1/2" for the traffic table.
std::string ep_layer_formula(int64_t experts, int64_t capacity, int64_t C, int64_t elem, int P);

}  // namespace ms
