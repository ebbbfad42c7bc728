// One include for Catch2 v2 (Debian 12: catch2/catch.hpp, single header) and
// v3 (Ubuntu 24.04: catch2/catch_all.hpp, compiled library). The Makefile
// defines MS_CATCH2_V3 when it finds v3.
#pragma once
#ifdef MS_CATCH2_V3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
