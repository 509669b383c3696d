#include "model_launch_impl.cuh"
SNN_DEFINE_MODEL_LAUNCHERS(bf16, snn::bf16_t)
