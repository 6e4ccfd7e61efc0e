"""Per-token training loss of SmolLM2-135M before any training, on a classification JSONL task.

    python experiments/first_loss/breakdown.py [task.path=FILE ...]

Builds the first training rows exactly as a run does (bench.batching.training_rows) and prints,
for each example, the loss of every completion token (the label word's tokens, then the
end-of-sequence token a decoder's training row ends with) and the row mean, then the means over
every completion token, over the label words' tokens and over the end-of-sequence tokens.
"""

import sys

import torch

from bench import batching, models, tasks
from bench.compose import compose
from bench.families import FAMILIES

overrides = [
    "model=smollm2-135m",
    "task=jsonl",
    "task.path=tests/fixtures/jsonl/clean.jsonl",
    "task.val_size=2",
    "task.test_size=4",
    *sys.argv[1:],
]
cfg = compose(overrides)
family = FAMILIES[cfg.model.family]
data = tasks.load(cfg.task, "text_to_text")
model, tokenizer, _ = models.load(cfg.model, family, len(data.labels))
model.eval()
examples = data.train[:8]
print(
    f"labels {data.labels}; uniform over the vocabulary: ln({model.config.vocab_size}) = "
    f"{torch.log(torch.tensor(float(model.config.vocab_size))):.2f}"
)
label_losses, eos_losses = [], []
for e in examples:
    completion = data.completion(e)
    # the row as training builds it: the label word's tokens, then end-of-sequence
    row = batching.text_to_text_row(
        tokenizer, e.prompt, completion, "decoder", cfg.task.max_length, cfg.task.max_new_tokens, stop=True
    )
    ids = torch.tensor([row["input_ids"]])
    labels = torch.tensor(row["labels"])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    losses = torch.nn.functional.cross_entropy(logits, labels[1:], ignore_index=batching.IGNORE, reduction="none")
    scored = [(tokenizer.decode([int(t)]), float(losses[i])) for i, t in enumerate(labels[1:]) if t != batching.IGNORE]
    label_losses += [loss for _, loss in scored[:-1]]
    eos_losses.append(scored[-1][1])
    print(
        f"{completion!r:12} "
        + "  ".join(f"{tok!r}: {loss:.2f}" for tok, loss in scored)
        + f"   row mean {sum(loss for _, loss in scored) / len(scored):.2f}"
    )
every = label_losses + eos_losses
print(
    f"mean over every completion token: {sum(every) / len(every):.2f}; over the label words' tokens: "
    f"{sum(label_losses) / len(label_losses):.2f}; over the end-of-sequence tokens ({tokenizer.eos_token!r}): "
    f"{sum(eos_losses) / len(eos_losses):.2f}"
)
