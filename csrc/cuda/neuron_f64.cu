#include "launch_impl.cuh"
SNN_DEFINE_LAUNCHERS(f64, double)
