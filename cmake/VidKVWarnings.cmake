# vidkv_set_warnings(target): -Wall -Wextra (and -Werror with VIDKV_WERROR) for C++; host flags for CUDA.
function(vidkv_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wshadow=local>  # clang has no -Wshadow=local
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${VIDKV_WERROR}>>:-Werror>
    # GCC 12's -Wrestrict misfires inside libstdc++'s std::string operator+ (GCC bug 105329).
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:-Wno-restrict>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
endfunction()
