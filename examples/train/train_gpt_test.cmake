# train_gpt end to end (ctest, host): checkpoints resume bit for bit, a mismatched resume is refused
# and leaves the checkpoint as it was, text data trains, a malformed token file is refused.
#   cmake -DTRAIN=path/to/train_gpt -DDIR=scratch -P train_gpt_test.cmake
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
set(common --device cpu --precision bf16-mixed --vocab 64 --ctx 16 --d 32 --layers 1 --heads 2 --batch 4 --quiet)

function(run expect_rc)
  execute_process(COMMAND ${TRAIN} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(out "${out}${err}" PARENT_SCOPE)
  if(expect_rc EQUAL 0 AND NOT rc EQUAL 0)
    message(FATAL_ERROR "train_gpt ${ARGN} failed (${rc}):\n${out}${err}")
  elseif(NOT expect_rc EQUAL 0 AND rc EQUAL 0)
    message(FATAL_ERROR "train_gpt ${ARGN} should have failed:\n${out}${err}")
  endif()
endfunction()

function(expect_output text)
  string(FIND "${out}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${text}' in:\n${out}")
  endif()
endfunction()

# 1. Twenty steps in one go equal ten, a save, a resume and ten more: byte for byte.
run(0 ${common} --val-tokens 0 --steps 20 --save ${DIR}/straight)
run(0 ${common} --val-tokens 0 --steps 10 --save ${DIR}/half)
file(COPY ${DIR}/half/checkpoint.safetensors DESTINATION ${DIR}/half_copy)
run(0 ${common} --val-tokens 0 --steps 20 --resume ${DIR}/half --save ${DIR}/resumed)
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DIR}/straight/checkpoint.safetensors
                        ${DIR}/resumed/checkpoint.safetensors RESULT_VARIABLE differ)
if(NOT differ EQUAL 0)
  message(FATAL_ERROR "a resumed run differs from the uninterrupted one")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DIR}/straight/checkpoint.safetensors
                        ${DIR}/half/checkpoint.safetensors RESULT_VARIABLE differ)
if(differ EQUAL 0)
  message(FATAL_ERROR "ten more steps changed nothing: the comparison above would prove nothing")
endif()

# 2. A resume into another model is refused, naming what differs, and the checkpoint is unchanged.
run(1 ${common} --val-tokens 0 --d 16 --steps 20 --resume ${DIR}/half --save ${DIR}/half)
expect_output("the checkpoint was trained with d '32', this run has '16'")
run(1 ${common} --val-tokens 0 --batch 8 --steps 20 --resume ${DIR}/half)
expect_output("the checkpoint was trained with batch '4', this run has '8'")
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DIR}/half/checkpoint.safetensors
                        ${DIR}/half_copy/checkpoint.safetensors RESULT_VARIABLE differ)
if(NOT differ EQUAL 0)
  message(FATAL_ERROR "a refused resume changed the checkpoint")
endif()
file(WRITE ${DIR}/broken/checkpoint.safetensors "not a checkpoint")
run(1 ${common} --steps 20 --resume ${DIR}/broken)
expect_output("runs past the end of the file (16 bytes): truncated or not safetensors")

# 3. A text file trains (bytes as tokens) with a held-out validation split.
file(READ ${CMAKE_CURRENT_LIST_DIR}/../../README.md text)
file(WRITE ${DIR}/readme.txt "${text}")
run(0 --device cpu --precision 32-true --vocab 256 --ctx 16 --d 32 --layers 1 --heads 2 --batch 4 --steps 5
    --data ${DIR}/readme.txt --val-tokens 512 --sample 20)
expect_output("validation loss")
expect_output("sample  ")

# 4. A malformed token file is refused with the file named.
file(WRITE ${DIR}/bad.bin "abc")
run(1 ${common} --steps 2 --data ${DIR}/bad.bin)
expect_output("bad.bin': expected a 1024-byte header, got a file of 3 bytes")

# 5. --precision tf32 is the peer's "tf32": the 32-true policy with TF32 GEMMs on the run's context.
#    The host GEMM computes in full f32 (allow_tf32 is a CUDA setting), so on the host it trains
#    exactly as 32-true, and it reports itself as tf32.
set(small --device cpu --vocab 64 --ctx 16 --d 32 --layers 1 --heads 2 --batch 4 --steps 4 --val-tokens 256)
run(0 ${small} --precision 32-true)
string(REGEX MATCH "train loss +[0-9.]+" f32_loss "${out}")
string(REGEX MATCH "validation loss +[0-9.]+" f32_val "${out}")
run(0 ${small} --precision tf32)
expect_output("run                        tf32 on cpu")
expect_output("${f32_loss}")
expect_output("${f32_val}")
