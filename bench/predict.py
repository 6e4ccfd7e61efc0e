"""A model's outputs on examples, in example order, and the mean loss of the gold answers.

- encoder: the classification head's logits, one score per label;
- text-to-text, classify tasks: rank classification. Each choice is scored by its mean
  log-likelihood per token after the prompt (length-normalised, as GPT-3 scores most tasks,
  so that multi-token choices such as ReCoRD entities are not penalised for their length);
- text-to-text, generate tasks: greedy decoding up to `task.max_new_tokens`, the text after the
  prompt, cut at the task's stop text (few-shot prompts: the separator between examples).

The loss is the mean cross-entropy of the gold label (encoders) or of the gold completion's
tokens (text-to-text), as in training, with one difference: a decoder's training rows end with
end-of-sequence (so that a served model stops after its answer) and rank classification scores the
choices without it, so for decoders on classify tasks the validation loss leaves that token out
(experiments/first_loss shows its share of the first training loss).
"""

from __future__ import annotations

import torch
from peft import PeftModel, PeftType

from bench.batching import (
    IGNORE,
    encoder_rows,
    loader,
    prompt_ids,
    text_to_text_row,
    training_rows,
)


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def predict(
    model, tokenizer, task, examples, architecture: str, task_cfg, batch_size: int, device: str
) -> tuple[list, float]:
    model.eval()
    if architecture == "encoder":
        return _classify(model, encoder_rows(examples, tokenizer, task_cfg.max_length), tokenizer, batch_size, device)
    if task.kind == "generate":
        return _generate(model, tokenizer, task, examples, architecture, task_cfg, batch_size, device)
    return _rank(model, tokenizer, task, examples, architecture, task_cfg, batch_size, device)


def _classify(model, rows, tokenizer, batch_size, device):
    scores, loss_sum = [None] * len(rows), 0.0
    for batch in loader(rows, tokenizer, batch_size):
        index = batch.pop("index")
        out = model(**_to(batch, device))
        for i, row in zip(index.tolist(), out.logits.float().tolist()):
            scores[i] = row
        loss_sum += out.loss.item() * len(index)
    return scores, loss_sum / len(rows)


def completion_log_likelihood(model, batch: dict, architecture: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of the label tokens, and how many there are."""
    labels = batch["labels"]
    if architecture == "encoder_decoder":
        logits = model(**batch).logits  # decoder positions line up with the labels
    else:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        # prompt tuning prepends virtual tokens: the positions of the real tokens are the last ones
        logits = model(**inputs).logits[:, -labels.shape[1] : -1]
        labels = labels[:, 1:]
    mask = labels != IGNORE
    # log-softmax only where a label is, not over every position of the vocabulary-wide logits
    picked = logits[mask].float().log_softmax(-1).gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
    sums = torch.zeros(labels.shape[0], device=labels.device).index_put_(
        (mask.nonzero()[:, 0],), picked, accumulate=True
    )
    return sums, mask.sum(-1)


def ranking_rows(tokenizer, task, examples, architecture, task_cfg) -> list[dict]:
    """A row per example and choice, as rank classification scores them (`example` and `choice` say which)."""
    rows = []
    for i, e in enumerate(examples):
        for j, choice in enumerate(task.choices(e)):
            row = text_to_text_row(
                tokenizer,
                e.prompt or e.text,
                choice,
                architecture,
                task_cfg.max_length,
                task_cfg.max_new_tokens,
                stop=False,
            )
            rows.append({**row, "example": i, "choice": j})
    return rows


def scored_rows(tokenizer, task, examples, architecture: str, task_cfg) -> list[dict]:
    """The rows a model reads to answer `examples`: their inputs (encoder), a row per choice (ranking), or the
    prompt with the gold completion (generation: what a cached greedy decode of an answer that long reads)."""
    if architecture == "encoder":
        return encoder_rows(examples, tokenizer, task_cfg.max_length)
    if task.kind == "generate":
        return training_rows(task, examples, tokenizer, architecture, task_cfg.max_length, task_cfg.max_new_tokens)
    return ranking_rows(tokenizer, task, examples, architecture, task_cfg)


def _rank(model, tokenizer, task, examples, architecture, task_cfg, batch_size, device):
    rows = ranking_rows(tokenizer, task, examples, architecture, task_cfg)
    scores = [[0.0] * len(task.choices(e)) for e in examples]
    gold_loss = 0.0
    for batch in loader(rows, tokenizer, batch_size):
        example, choice = batch.pop("example").tolist(), batch.pop("choice").tolist()
        batch.pop("index")
        sums, counts = completion_log_likelihood(model, _to(batch, device), architecture)
        for i, j, s, n in zip(example, choice, sums.tolist(), counts.tolist()):
            scores[i][j] = s / n
            if j == examples[i].label:
                gold_loss -= s / n
    return scores, gold_loss / len(examples)


def _generate(model, tokenizer, task, examples, architecture, task_cfg, batch_size, device):
    # the loss: teacher-forced on the gold completions
    rows = training_rows(task, examples, tokenizer, architecture, task_cfg.max_length, task_cfg.max_new_tokens)
    loss_sum = 0.0
    for batch in loader(rows, tokenizer, batch_size):
        n = len(batch.pop("index"))
        loss_sum += model(**_to(batch, device)).loss.item() * n
    texts = [None] * len(examples)
    # peft's prompt learning on decoders generates wrongly in batches and from a cache (peft 0.21,
    # transformers 5; checked against token-by-token argmax, tests/test_families.py): left padding
    # shifts the positions queries take against a prefix's keys, and prompt tuning's cached steps lose
    # the virtual tokens from the attention mask. Prompt tuning generates here from the base model,
    # its soft prompt given as embeddings before each row (batched, cached); prefix tuning through
    # peft one prompt at a time.
    peft_type = model.active_peft_config.peft_type if isinstance(model, PeftModel) else None
    prompted = architecture == "decoder" and peft_type == PeftType.PROMPT_TUNING
    if architecture == "decoder" and peft_type == PeftType.PREFIX_TUNING:
        batch_size = 1
    prompts = [
        {"input_ids": ids, "attention_mask": [1] * len(ids)}
        for ids in (prompt_ids(tokenizer, e.prompt or e.text, task_cfg.max_length) for e in examples)
    ]
    options = {
        "max_new_tokens": task_cfg.max_new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    # decoders continue the prompt, so prompts are padded on the left
    for batch in loader(prompts, tokenizer, batch_size, left=architecture == "decoder"):
        index = batch.pop("index").tolist()
        batch = _to(batch, device)
        if prompted:  # from embeddings alone, generate returns only the new tokens
            out = model.get_base_model().generate(
                **with_prompts(model, batch, [model.active_adapter] * len(index)), **options
            )
        else:
            out = model.generate(**batch, **options)
            if architecture == "decoder":
                out = out[:, batch["input_ids"].shape[1] :]
        for i, ids in zip(index, out.tolist()):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            texts[i] = (text.split(task.stop, 1)[0] if task.stop else text).strip()
    return texts, loss_sum / len(examples)


def with_prompts(model: PeftModel, batch: dict, names: list[str]) -> dict:
    """The base model's inputs for `batch` with row i's soft prompt (of task adapter names[i]) before
    its token embeddings, and the attention mask and token types extended to match: what peft's
    forward does with the active adapter's prompt, row by row (peft ignores `adapter_names` here)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    embeds = model.get_base_model().get_input_embeddings()(ids)
    prompts = torch.stack([model.prompt_encoder[n].embedding.weight for n in names]).to(embeds.dtype)
    rows, virtual = len(ids), prompts.shape[1]
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "token_type_ids")}
    inputs["inputs_embeds"] = torch.cat([prompts, embeds], dim=1)
    inputs["attention_mask"] = torch.cat([mask.new_ones(rows, virtual), mask], dim=1)
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = torch.cat(
            [batch["token_type_ids"].new_zeros(rows, virtual), batch["token_type_ids"]], dim=1
        )
    return inputs
