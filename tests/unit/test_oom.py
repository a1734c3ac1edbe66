"""harness.run.worker.is_oom on the out-of-memory errors of CUDA torch, XLA (JAX) and
TensorFlow on a GPU, and of cuBLAS and cuDNN, which no CPU machine can provoke:
each built as the framework builds it, from the format string in its source
(cited beside it), under its Python type's name. The CPU ones are provoked for
real in tests/unit/test_worker.py. Errors that are not about memory stay errors."""
from __future__ import annotations

import pytest

from harness.run.worker import is_oom


# The Python types, by the names the frameworks give them (is_oom reads the name too).
class OutOfMemoryError(RuntimeError):      # torch.OutOfMemoryError (c10::OutOfMemoryError)
    pass


class AcceleratorError(RuntimeError):      # torch.AcceleratorError (c10::AcceleratorError)
    pass


class JaxRuntimeError(RuntimeError):       # jax.errors.JaxRuntimeError (jaxlib, 0.4.36 on)
    pass


class XlaRuntimeError(RuntimeError):       # its name in older jaxlib
    pass


class ResourceExhaustedError(Exception):   # tf.errors.ResourceExhaustedError (an OpError)
    pass


class InvalidArgumentError(Exception):     # tf.errors.InvalidArgumentError
    pass


GiB = 2**30

# pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp, DeviceCachingAllocator::malloc:
# TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory. Tried to allocate ",
# format_size(alloc_size), ". GPU ", device_id, " has a total capacity of ", ...,
# " of which ", ..., " is free. ", proc_info, allowed_info, "Of the allocated memory ",
# ..., " is allocated by PyTorch, ", private_pool_msg, "and ", ..., " is reserved by
# PyTorch but unallocated.", " If reserved but unallocated memory is large try setting",
# " PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid", " fragmentation. ...")
TORCH_CACHING_ALLOCATOR = (
    "CUDA out of memory. Tried to allocate 16.00 GiB. GPU 0 has a total capacity of "
    "139.72 GiB of which 3.25 GiB is free. Of the allocated memory 130.02 GiB is "
    "allocated by PyTorch, and 5.06 GiB is reserved by PyTorch but unallocated. If "
    "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF="
    "expandable_segments:True to avoid fragmentation.")
# pytorch/pytorch c10/cuda/CUDAException.cpp, c10_cuda_check_implementation:
# "CUDA error: " + cudaGetErrorString(err), thrown as c10::AcceleratorError;
# cudaGetErrorString(cudaErrorMemoryAllocation) is "out of memory".
TORCH_CUDA_CHECK = "CUDA error: out of memory\n"
# pytorch/pytorch aten/src/ATen/cuda/Exceptions.h, AT_CUDA_DRIVER_CHECK: "CUDA driver
# error: " + cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY) ("out of memory").
TORCH_DRIVER_CHECK = "CUDA driver error: out of memory"
# pytorch/pytorch aten/src/ATen/cuda/Exceptions.h, TORCH_CUDABLAS_CHECK(EXPR): "CUDA
# error: ", _cublasGetErrorEnum(__err) (aten/src/ATen/cuda/CUDABlas.cpp), " when calling
# `" #EXPR "`": a cuBLAS handle or workspace that found no memory.
TORCH_CUBLAS = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
# pytorch/pytorch aten/src/ATen/cuda/Exceptions.h, AT_CUDNN_CHECK: "cuDNN error: ",
# cudnnGetErrorString(status): CUDNN_STATUS_ALLOC_FAILED before cuDNN 9, then
# CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED / ..._HOST_ALLOCATION_FAILED.
TORCH_CUDNN_8 = "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"
TORCH_CUDNN_9 = "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED"
# openxla/xla xla/stream_executor/integrations/tf_allocator_adapter.cc,
# MemoryAllocationError: absl::ResourceExhaustedError(StrCat("Out of ", is_host_mem ?
# "host " : "", "memory while trying to allocate ", size, " bytes.", ...)), which
# jaxlib raises as "RESOURCE_EXHAUSTED: " + the message.
XLA_GPU = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes."
XLA_HOST = ("RESOURCE_EXHAUSTED: Out of host memory while trying to allocate 17179869184 "
            "bytes. Please set the environment variable XLA_PJRT_GPU_HOST_MEMORY_LIMIT_GB "
            "to allocate larger host memory than the default 64 GB.")
# tensorflow/tensorflow tensorflow/core/framework/op_kernel.cc,
# OpKernelContext::allocate_tensor: errors::ResourceExhausted("OOM when allocating
# tensor with shape", shape.DebugString(), " and type ", DataTypeString(type), " on ",
# device name, " by allocator ", a->Name()).
TF_GPU = ("OOM when allocating tensor with shape[8,16,8192,8192] and type float on "
          "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")


@pytest.mark.parametrize("exc", [
    OutOfMemoryError(TORCH_CACHING_ALLOCATOR),
    AcceleratorError(TORCH_CUDA_CHECK),
    RuntimeError(TORCH_DRIVER_CHECK),
    RuntimeError(TORCH_CUBLAS),
    RuntimeError(TORCH_CUDNN_8),
    RuntimeError(TORCH_CUDNN_9),
    RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED"),
    JaxRuntimeError(XLA_GPU),
    XlaRuntimeError(XLA_GPU),
    JaxRuntimeError(XLA_HOST),
    ResourceExhaustedError(TF_GPU),
    ResourceExhaustedError(XLA_GPU[len("RESOURCE_EXHAUSTED: "):]),   # TF under XLA
], ids=lambda exc: f"{type(exc).__name__}:{str(exc)[:40]}")
def test_gpu_out_of_memory_errors_are_oom(exc):
    assert is_oom(exc) is True


@pytest.mark.parametrize("message", [TORCH_CACHING_ALLOCATOR, TF_GPU, XLA_GPU])
def test_the_message_alone_is_enough(message):
    """Wrapped in a plain RuntimeError (a worker re-raising it), still oom."""
    assert is_oom(RuntimeError(message)) is True


@pytest.mark.parametrize("exc", [
    AcceleratorError("CUDA error: an illegal memory access was encountered\n"),
    AcceleratorError("CUDA error: no kernel image is available for execution on the device"),
    RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling "
                 "`cublasGemmEx(handle, opa, opb, m, n, k, ...)`"),
    RuntimeError("CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasLtMatmul`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you "
                 "passed in a non-contiguous input."),
    RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
    JaxRuntimeError("INVALID_ARGUMENT: Executable expected parameter 0 of size 8 but got "
                    "buffer with incompatible size 4"),
    JaxRuntimeError("INTERNAL: Failed to launch CUDA kernel: flash_fwd with block "
                    "dimensions: 128x1x1: CUDA_ERROR_INVALID_VALUE: invalid argument"),
    InvalidArgumentError("Incompatible shapes: [2,8,128] vs. [2,8,64] [Op:AddV2]"),
    ValueError("head_dim 512 is above what FlashAttention takes (256)"),
], ids=lambda exc: f"{type(exc).__name__}:{str(exc)[:40]}")
def test_errors_that_are_not_about_memory_stay_errors(exc):
    assert is_oom(exc) is False
