// Small helpers for the multi-rank tests that check error messages. Every
// rank must run the same collectives even when a check fails, so tests grab
// the message as a string and assert on it after the communication is done.
#pragma once
#include <exception>
#include <functional>
#include <string>

namespace ms::test {

// The message f() threw, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

inline bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace ms::test
