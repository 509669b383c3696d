#include "launch_impl.cuh"
SNN_DEFINE_LAUNCHERS(f32, float)
