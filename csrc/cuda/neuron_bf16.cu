#include "launch_impl.cuh"
SNN_DEFINE_LAUNCHERS(bf16, snn::bf16_t)
