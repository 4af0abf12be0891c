// The object that carries the programs' precompiled headers (CMakeLists.txt, cloak_program_pch):
// it has no code of its own.
