"""The probe's model (bench/methods/probe.py): a frozen model's pooled features and a scikit-learn classifier."""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from bench.batching import count_tokens


class ProbeModel(nn.Module):
    """A frozen model plus a fitted classifier, answering like a classification model."""

    def __init__(self, model: nn.Module, classifier, pooling: str):
        super().__init__()
        self.model, self.classifier, self.pooling = model, classifier, pooling

    def features(self, input_ids, attention_mask) -> torch.Tensor:
        backbone = self.model.get_encoder() if self.model.config.is_encoder_decoder else self.model
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[
            -1
        ]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "last":  # right padding: the last real token sits at length - 1
            return hidden[torch.arange(len(hidden)), attention_mask.sum(-1) - 1].float().cpu()
        return ((hidden * mask).sum(1) / mask.sum(1)).float().cpu()

    @torch.no_grad()
    def forward(self, input_ids, attention_mask, labels=None, **_):
        probabilities = torch.tensor(self.classifier.predict_proba(self.features(input_ids, attention_mask).numpy()))
        logits = probabilities.clamp_min(1e-12).log()  # log-probabilities: argmax and loss as for any head
        loss = nn.functional.nll_loss(logits, labels.cpu()) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def fit_classifier(self, batches, device: str) -> tuple[int, int]:
        """Features of every training batch, then the classifier's fit on them; the examples and
        tokens read."""
        tokens, features, labels = 0, [], []
        self.eval()
        with torch.no_grad():
            for batch in batches:
                tokens += count_tokens(batch)
                features.append(self.features(batch["input_ids"].to(device), batch["attention_mask"].to(device)))
                labels.append(batch["labels"])
        labels = torch.cat(labels)
        self.classifier.fit(torch.cat(features).numpy(), labels.numpy())
        return len(labels), tokens
