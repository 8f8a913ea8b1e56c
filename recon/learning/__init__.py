"""Training the learned SPECT mu-map (needs the ``train`` extra: JAX, Optax, ONNX)."""
