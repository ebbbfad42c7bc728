// One include for Catch2 v2 (Debian 12: catch2/catch.hpp, single header) and
// v3 (Ubuntu 24.04: catch2/catch_all.hpp, compiled library). The Makefile
// defines MS_CATCH2_V3 when it finds v3.
#pragma once
#ifdef MS_CATCH2_V3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#ifdef MS_CATCH2_V3
// Catch2 v3 renamed the substring matcher; the tests use v2's name.
namespace Catch {
inline Matchers::StringContainsMatcher Contains(const std::string& s) {
  return Matchers::ContainsSubstring(s);
}
}  // namespace Catch
#endif
