"""`make run` and `make cluster`: local orchestration of every process the gateway needs."""
