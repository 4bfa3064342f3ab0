"""What the figures were measured on, and its floor: the matmul peak in each dtype."""

import os
import platform

AMX_FLAGS = ("amx_tile", "amx_bf16")


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as file:
            return file.read()
    except OSError:
        return ""


def _cpuinfo_field(name):
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def describe_machine():
    """CPU model, cores, the instruction sets that decide oneDNN's kernels, and the GPUs TensorFlow sees."""
    import tensorflow as tf

    flags = set(_cpuinfo_field("flags").split())
    gpus = [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    return {
        "cpu": _cpuinfo_field("model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": all(flag in flags for flag in AMX_FLAGS),
        "gpus": gpus,
        "tensorflow": tf.__version__,
    }


def machine_text(machine):
    """One line for a `describe_machine` dict: CPU, cores, instruction sets, AMX, GPUs."""
    features = ", ".join(name for name in ("avx512", "avx512_bf16", "amx") if machine[name]) or "no AVX-512"
    return (f"{machine['cpu']} ({machine['cores']} cores; {features}; AMX {'present' if machine['amx'] else 'absent'}; "
            f"GPUs: {', '.join(machine['gpus']) or 'none'})")


def matmul_peak(dtype, size=2048, repeats=5):
    """GFLOP/s of a `size`^3 matmul in `dtype` ("float32" or "bfloat16") through TensorFlow, the median of
    `repeats`: the rate no convolution network in that dtype can beat on this machine."""
    import tensorflow as tf

    from keras_retinanet.benchmark.timing import median_seconds

    a = tf.cast(tf.random.normal([size, size]), dtype)
    b = tf.cast(tf.random.normal([size, size]), dtype)
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    seconds = median_seconds(lambda: matmul().numpy(), repeats)
    return 2 * size**3 / seconds / 1e9


def forward_flops(model, image_size, batch_size=1):
    """Floating-point operations of one forward pass of `model` (TF's graph profiler: 2 per multiply-add)."""
    import tensorflow as tf

    concrete = tf.function(lambda images: model(images, training=False)).get_concrete_function(
        tf.TensorSpec([batch_size, image_size, image_size, 3], tf.float32)
    )
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    return tf.compat.v1.profiler.profile(concrete.graph, options=options).total_float_ops
