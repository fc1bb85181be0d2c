// Catch2's main, compiled once and linked into every host test executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
