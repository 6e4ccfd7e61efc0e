"""peft-bench: compare fine-tuning methods side by side with measurements."""

import logging

# bitsandbytes, imported by peft and transformers whatever the run, tries at import to fetch a CPU kernel from the
# hub (offline here, and untrusted by default) and warns on every command when it cannot; its own CPU path
# computes the same (bench/quantization.py turns the in-place repacking off anyway)
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
