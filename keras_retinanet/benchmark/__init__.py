"""`bin/benchmark`'s measurements: the hardware's floor, our detector's paths and the peers' (torchvision, KerasHub).

Peer code lives here only, never in the library. Every case runs in a fresh process (`timing.run_isolated`), so one
case's threads, dtype policy and memory do not leak into the next and each reports its own peak memory.
"""
