"""The training loop, its steps, transfer, several processes, config checks."""
