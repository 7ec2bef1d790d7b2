# Compiler flags shared by every llmkit target.
add_library(llmkit_flags INTERFACE)
target_compile_options(llmkit_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-missing-field-initializers>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wshadow=local>)  # GCC-only flag
if(LLMKIT_WERROR)
  target_compile_options(llmkit_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
if(LLMKIT_SANITIZE)
  target_compile_options(llmkit_flags INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer>)
  target_link_options(llmkit_flags INTERFACE -fsanitize=address,undefined)
endif()
if(LLMKIT_TSAN AND LLMKIT_SANITIZE)
  message(FATAL_ERROR "LLMKIT_TSAN and LLMKIT_SANITIZE cannot be combined (ThreadSanitizer excludes AddressSanitizer); use two build folders")
endif()
if(LLMKIT_TSAN)
  target_compile_options(llmkit_flags INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread -fno-omit-frame-pointer>)
  target_link_options(llmkit_flags INTERFACE -fsanitize=thread)
endif()
target_include_directories(llmkit_flags INTERFACE
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)

# llmkit_layer(NAME SOURCES... DEPS ...) defines one layer library.
function(llmkit_layer name)
  cmake_parse_arguments(L "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${L_SOURCES})
  target_link_libraries(${name} PUBLIC llmkit_flags ${L_DEPS})
endfunction()
