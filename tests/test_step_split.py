"""benchmarks/step_split.py's ONEDNN_VERBOSE parser: both oneDNN line formats, only convolutions of
kernel > 1x1, times scaled to CPU milliseconds per step."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import step_split  # noqa: E402

SHAPE = "ic64oc64_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1"
LINES = [
    # oneDNN 3.2 (genmod's wheel): no version or "primitive" field
    f"onednn_verbose,exec,cpu,convolution,brgconv:avx512_core,forward_training,src_f32::blocked:acdb::f0,"
    f"attr-scratchpad:user ,alg:convolution_direct,mb4_{SHAPE},2.5",
    f"onednn_verbose,exec,cpu,convolution,brgconv:avx512_core,forward_training,src_f32::blocked:acdb::f0,"
    f"attr-scratchpad:user ,alg:convolution_direct,mb4_{SHAPE},1.5",
    # torch's newer oneDNN: "v1,primitive,exec"
    f"onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,backward_weights,src:f32,"
    f"attr-scratchpad:user,alg:convolution_direct,mb32_{SHAPE},10.0",
    # left out: a 1x1 convolution, a grouped (resampling) one, a reorder, a creation line, an sgemm
    "onednn_verbose,v1,primitive,exec,cpu,convolution,jit_1x1:avx512_core,forward_training,src:f32,,"
    "alg:convolution_direct,mb32_ic128oc128_ih32oh32kh1sh1dh0ph0_iw32ow32kw1sw1dw0pw0,8.6",
    "onednn_verbose,v1,primitive,exec,cpu,deconvolution,jit:avx512_core,forward_training,src:f32,,"
    "alg:deconvolution_direct,g64mb32_ic64oc64_ih16oh32kh2sh2dh0ph0_iw16ow32kw2sw2dw0pw0,0.7",
    "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:abcd::f0,,,32x64x32x32,0.9",
    f"onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit:avx512_core,forward_training,src:f32,,"
    f"alg:convolution_direct,mb32_{SHAPE},0.1",
    "onednn_verbose,exec,cpu,gemm_api,,undef,src_f32::blocked:ab:f0,,,0.3",
]


def test_shapes_sums_each_pass_and_shape_scaled():
    got = step_split.shapes(LINES, 0.5)
    assert got == {("forward_training", SHAPE): pytest.approx(2.0),
                   ("backward_weights", SHAPE): pytest.approx(5.0)}
