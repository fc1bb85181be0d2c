# cmake -DA=<exe> -DB=<exe> -P same_bits.cmake
# Runs the hidden "[digest]" test case of two builds of markov_golden_test.cpp and fails unless both
# print the same digest lines (the bits of the stationary distribution and the entropy rate).
foreach(side A B)
  execute_process(COMMAND ${${side}} "[digest]" OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${${side}} [digest] exited with ${rc}:\n${out}")
  endif()
  string(REGEX MATCHALL "markov-digest[^\n]*" lines_${side} "${out}")
  if(lines_${side} STREQUAL "")
    message(FATAL_ERROR "${${side}} printed no digest lines:\n${out}")
  endif()
endforeach()
if(NOT lines_A STREQUAL lines_B)
  message(FATAL_ERROR "the builds disagree:\n  ${A}: ${lines_A}\n  ${B}: ${lines_B}")
endif()
message(STATUS "same bits: ${lines_A}")
