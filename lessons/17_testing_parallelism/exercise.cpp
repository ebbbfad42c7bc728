// Lesson 17 exercise: the placement over tp of every tensor of one GPT-2 block
// at tp 2 with sequence parallelism; then run `make lesson L=17 TRY=1` (2
// ranks: the checker runs the block for real and measures each placement).
//
// Tools: ms::Placement::replicated(), ::sharded(dim, ndim), ::partial()
// (tensor/placement.h); the shapes and what each tensor is are in lesson.h.
// README questions 1-4 walk through the block.
#include <stdexcept>

#include "lessons/17_testing_parallelism/lesson.h"

ms::Placement tp_placement(BlockTensor which) {
  // TODO: one `case` per BlockTensor (a switch), returning its placement over
  //       tp. Where does sequence parallelism cut T, where does the column
  //       layer cut features, and which tensors still owe a sum?
  (void)which;
  throw std::runtime_error(
      "TODO: write tp_placement in lessons/17_testing_parallelism/exercise.cpp");
}
