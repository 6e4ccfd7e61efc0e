"""The torch modules that methods add to a model, each imported by its method's `apply`: apart
from the method modules, which every `python -m bench` imports (bench/methods/__init__.py)."""
