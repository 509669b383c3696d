#include "launch_impl.cuh"
SNN_DEFINE_LAUNCHERS(f16, snn::half_t)
