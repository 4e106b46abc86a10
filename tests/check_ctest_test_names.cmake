# Checks that ctest runs every Catch2 test case of the test program faithfully: for each name the program lists,
# ctest holds a test of exactly that name, and that test's filter argument selects exactly that one test case.
#
# Why: catch_discover_tests (Catch2's CatchAddTests.cmake) reads the names as a CMake list and escapes only ',', '['
# and ']' in the filter. A ';' splits a name into two ctest tests whose filters match nothing (Catch2 v2 then exits
# 0: ctest reports "Passed" and no assertion ran); an unbalanced '[' makes the list swallow every later name into one
# test that matches nothing; a '\', a '*' at either end, a leading '"', '~', '-' or 'exclude:' reach Catch2's
# test-spec parser unescaped (escape, wildcard, quoted name, exclusion, command-line option; Catch2 docs,
# command-line.md, "Specifying which tests to run"), and
# names differing only in case select each other (Catch2 compares names case-insensitively). Any such name fails
# here, listed with what its ctest filter selects instead.
#
# Run by ctest (tests/CMakeLists.txt):
#   cmake -D TEST_PROGRAM=<path of vidkv_tests> -D CATCH_MAJOR=<2|3> -D CTEST_COMMAND=<ctest>
#         -D TEST_DIR=<build dir of tests/> -P check_ctest_test_names.cmake
# TEST_DIR is the tests' own build folder, not the top one, so that the `ctest --show-only` run here writes its
# Testing/Temporary/LastTest.log there instead of over the log of the ctest run that runs this check.
cmake_minimum_required(VERSION 3.25)

foreach(var TEST_PROGRAM CATCH_MAJOR CTEST_COMMAND TEST_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_ctest_test_names.cmake: -D ${var}=... is required")
  endif()
endforeach()
if(CATCH_MAJOR EQUAL 2)
  set(list_args --list-test-names-only)
else()
  set(list_args --list-tests --verbosity quiet)
endif()

# Every test case name, one per line (the program's own listing, as catch_discover_tests reads it).
execute_process(COMMAND "${TEST_PROGRAM}" ${list_args} OUTPUT_VARIABLE catch_names RESULT_VARIABLE rc)
if(NOT rc MATCHES "^[0-9]+$" OR catch_names STREQUAL "")
  message(FATAL_ERROR "${TEST_PROGRAM} ${list_args} failed (${rc}) or listed no test case")
endif()

# Every ctest test and its command line, as ctest will run them.
execute_process(COMMAND "${CTEST_COMMAND}" --show-only=json-v1 WORKING_DIRECTORY "${TEST_DIR}"
                OUTPUT_VARIABLE ctest_json RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ctest --show-only=json-v1 in ${TEST_DIR} failed (${rc})")
endif()
string(JSON ctest_tests GET "${ctest_json}" tests)
string(JSON n_ctest LENGTH "${ctest_tests}")

# Lines are walked with string(FIND) rather than as CMake lists: a name may hold ';', '[' or '\', which lists treat
# specially (the very problem checked here).
set(catch_haystack "\n${catch_names}")
set(ctest_haystack "\n")
set(problems "")
set(n_checked 0)
math(EXPR last "${n_ctest} - 1")
foreach(i RANGE ${last})
  string(JSON test GET "${ctest_tests}" ${i})
  string(JSON name GET "${test}" name)
  string(JSON program ERROR_VARIABLE no_command GET "${test}" command 0)
  string(JSON filter ERROR_VARIABLE no_filter GET "${test}" command 1)
  if(no_command OR no_filter OR NOT program STREQUAL TEST_PROGRAM)
    continue()
  endif()
  string(APPEND ctest_haystack "${name}\n")
  string(FIND "${catch_haystack}" "\n${name}\n" at)
  if(at EQUAL -1)
    continue()  # not one test case (the [optimized] rerun, or a fragment of a split name: reported below)
  endif()
  execute_process(COMMAND "${TEST_PROGRAM}" "${filter}" ${list_args} OUTPUT_VARIABLE selected ERROR_VARIABLE err)
  if(NOT selected STREQUAL "${name}\n")
    # Shown as a count and the first names (an exclusion selects every other test case).
    string(REGEX MATCHALL "\n" eols "${selected}")
    list(LENGTH eols n_selected)
    set(first "")
    if(n_selected GREATER 0)
      string(REGEX MATCH "^[^\n]+(\n[^\n]+)?(\n[^\n]+)?" first "${selected}")
    endif()
    string(REPLACE "\n" " | " first "${first}")
    string(STRIP "${err}" err)
    string(REPLACE "\n" " " err "${err}")
    string(APPEND problems "  '${name}': its ctest filter '${filter}' selects ${n_selected} test cases: ${first}"
           " ${err}\n")
  endif()
  math(EXPR n_checked "${n_checked} + 1")
endforeach()

set(rest "${catch_names}")
set(n_names 0)
while(NOT rest STREQUAL "")
  string(FIND "${rest}" "\n" eol)
  if(eol EQUAL -1)
    set(line "${rest}")
    set(rest "")
  else()
    string(SUBSTRING "${rest}" 0 ${eol} line)
    math(EXPR eol "${eol} + 1")
    string(SUBSTRING "${rest}" ${eol} -1 rest)
  endif()
  if(line STREQUAL "")
    continue()
  endif()
  math(EXPR n_names "${n_names} + 1")
  string(FIND "${ctest_haystack}" "\n${line}\n" at)
  if(at EQUAL -1)
    string(APPEND problems "  '${line}': no ctest test has this name (catch_discover_tests split or mangled it)\n")
  endif()
endwhile()

if(NOT problems STREQUAL "")
  message(FATAL_ERROR "ctest cannot run these Catch2 test cases faithfully; rename them without ';', '\\', "
          "an unbalanced '[', a '*' at either end or a leading '\"', '~', '-' or 'exclude:', and distinct ignoring case:\n${problems}")
endif()
message(STATUS "all ${n_names} Catch2 test cases run under their own ctest name, each filter selecting only its own "
        "(${n_checked} checked)")
