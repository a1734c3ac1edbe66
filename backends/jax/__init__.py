"""The JAX/Flax backend. This package imports nothing: the runner reads settings.py
(framework-free) in its own process, and only a worker imports backend.py, which
imports the framework. The layout is the same in every backend folder:
settings.py (environment), attention.py (the core), layers.py (mha, block,
transformer), backend.py (weights in, steps, sync, memory probe); here the step
itself and the prepared cell sit apart in steps.py, to keep backend.py short."""
