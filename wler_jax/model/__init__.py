"""The networks, the spec that alone knows the method and op choice, kernels and pooling."""
