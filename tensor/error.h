// Errors. A user mistake (bad shape, dtype, index, flag, config key) throws
// ms::Error whose message names the op, the values involved and what would be
// valid. MS_ASSERT is for internal invariants: a failure there is our bug.
#pragma once
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

namespace ms {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void format_into(std::ostringstream&) {}
template <typename T, typename... Rest>
void format_into(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  format_into(os, rest...);
}
}  // namespace detail

// Concatenates the arguments with operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::format_into(os, args...);
  return os.str();
}

// A double with all 17 significant digits ("%.17g"): exact, and an integer
// value prints as one (1048576, not ostream's "1.04858e+06"). For messages
// that quote a number the reader may type back, or compare as text.
inline std::string exact_str(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

[[noreturn]] void assert_fail(const char* cond, const char* file, int line, const std::string& msg);

}  // namespace ms

#define MS_CHECK(cond, ...)                                     \
  do {                                                          \
    if (!(cond)) throw ::ms::Error(::ms::str_cat(__VA_ARGS__)); \
  } while (0)

#define MS_ASSERT(cond, ...)                                                               \
  do {                                                                                     \
    if (!(cond)) ::ms::assert_fail(#cond, __FILE__, __LINE__, ::ms::str_cat(__VA_ARGS__)); \
  } while (0)
