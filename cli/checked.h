// Products of user-given sizes, refused before they overflow int64. Without
// this `--batch-size 4611686018427387904 --seq-len 4` wraps B·T to 0 and
// crashes far away from the flags that caused it.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

#include "tensor/error.h"

namespace ms {

struct Factor {
  std::string name;  // "--batch-size", or a description such as "ranks"
  int64_t value;
};

// The product of non-negative factors, or an ms::Error naming every factor
// and what the product is (`what`, e.g. "tokens per micro-step B·T").
inline int64_t checked_product(std::initializer_list<Factor> factors, const std::string& what) {
  int64_t p = 1;
  bool overflow = false;
  for (const Factor& f : factors) overflow = overflow || __builtin_mul_overflow(p, f.value, &p);
  if (overflow) {
    std::string names, values;
    for (const Factor& f : factors) {
      names += (names.empty() ? "" : " × ") + f.name;
      values += (values.empty() ? "" : " × ") + std::to_string(f.value);
    }
    throw Error(str_cat(names, " = ", values, " (", what,
                        ") overflows a 64-bit integer (at most ",
                        std::numeric_limits<int64_t>::max(), "); use smaller values"));
  }
  return p;
}

}  // namespace ms
