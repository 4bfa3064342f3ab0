"""Depthwise-separable 3x3 convolutions (SSDLite / FPNLite) that start with the output scale of the full conv they
replace."""

import keras

# Depthwise weights of this spread keep a channel's variance through the 3x3 window (9 * (1/3)^2 = 1), so the
# pointwise 1x1 sets the scale as the full conv's weights did. Keras' default counts the depthwise fan-in as
# 9 * channels and shrinks every separable conv's output variance by about the channel count (128x in the mobile
# heads), four times over in a head.
DEPTHWISE_STDDEV = 1 / 3


def separable_conv(filters, kernel_size, pointwise_initializer, **settings):
    """A `SeparableConv2D` whose output starts at the scale of `Conv2D(filters, kernel_size)` with the same
    weights' initializer per input (for `RandomNormal(s)` with C inputs: the full conv's 9 C s^2, as a pointwise
    `RandomNormal(3 s)` over a variance-keeping depthwise)."""
    return keras.layers.SeparableConv2D(
        filters, kernel_size, depthwise_initializer=keras.initializers.RandomNormal(stddev=DEPTHWISE_STDDEV),
        pointwise_initializer=pointwise_initializer, **settings)
