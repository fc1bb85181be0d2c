# Attaches the CUDA toolkit to the mixtape interface target: the runtime API and cuBLASLt for every
# unit, the program-wide MIXTAPE_WITH_CUDA switch, and CCCL's headers (CUDA 13 keeps CUB, Thrust and
# libcu++ under include/cccl) for host-compiled units only, since nvcc adds that path itself and a
# second copy would change its include precedence.
#
# Used by the build tree (with BUILD_INTERFACE, so the exported target stays host-only) and by the
# installed package's config file (so a consumer gets CUDA when, and only when, it has a toolkit).
function(mixtape_attach_cuda target)
  cmake_parse_arguments(ARG "BUILD_INTERFACE" "" "" ${ARGN})
  set(cccl_dirs "")
  foreach(dir IN LISTS CUDAToolkit_INCLUDE_DIRS)
    if(EXISTS "${dir}/cccl")
      list(APPEND cccl_dirs "${dir}/cccl")
    endif()
  endforeach()
  set(props
    "$<$<COMPILE_LANGUAGE:CXX>:${cccl_dirs}>")
  set(libs CUDA::cudart CUDA::cublasLt)
  set(defs MIXTAPE_WITH_CUDA=1)
  if(ARG_BUILD_INTERFACE)
    target_include_directories(${target} SYSTEM INTERFACE "$<BUILD_INTERFACE:${props}>")
    target_link_libraries(${target} INTERFACE "$<BUILD_INTERFACE:CUDA::cudart>" "$<BUILD_INTERFACE:CUDA::cublasLt>")
    target_compile_definitions(${target} INTERFACE "$<BUILD_INTERFACE:${defs}>")
  else()
    target_include_directories(${target} SYSTEM INTERFACE "${props}")
    target_link_libraries(${target} INTERFACE ${libs})
    target_compile_definitions(${target} INTERFACE ${defs})
  endif()
endfunction()
