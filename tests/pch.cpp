// The object that carries the test programs' precompiled header (tests/CMakeLists.txt,
// cloak_test_pch): it has no code of its own.
