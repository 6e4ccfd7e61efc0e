"""Frozen features and a scikit-learn classifier: the feature-extraction baseline.

The model never changes: its last hidden states, pooled over the real tokens, are the
features of each example; a logistic regression (on standardised features) or a random
forest is fitted on the training split. On any family the task is read in its encoder form
(text and text pair, fixed labels). The model's trainable parameters are zero; what the
classifier learns is stored per task and counted in the record's size.
"""

import pickle
import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from bench.batching import count_tokens
from bench.config import ConfigError
from bench.methods import Method, MethodSchema, register
from bench.train import TrainResult


@dataclass
class ProbeSchema(MethodSchema):
    lr: float = 0.0  # nothing trains by gradient
    classifier: str = "logistic"  # logistic | forest
    pooling: str = "mean"  # mean over real tokens | last real token
    C: float = 1.0  # logistic regression: inverse regularisation strength
    trees: int = 200  # random forest size


class ProbeModel(nn.Module):
    """A frozen model plus a fitted classifier, answering like a classification model."""

    def __init__(self, model: nn.Module, classifier, pooling: str):
        super().__init__()
        self.model, self.classifier, self.pooling = model, classifier, pooling

    def features(self, input_ids, attention_mask) -> torch.Tensor:
        backbone = self.model.get_encoder() if self.model.config.is_encoder_decoder else self.model
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]
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


@register
class Probe(Method):
    name = "probe"
    schema = ProbeSchema
    trains = False

    def check(self, cfg, family):
        if cfg.classifier not in ("logistic", "forest"):
            raise ConfigError("method.classifier", cfg.classifier, "one of forest, logistic")
        if cfg.pooling not in ("mean", "last"):
            raise ConfigError("method.pooling", cfg.pooling, "one of last, mean")
        if not cfg.C > 0:
            raise ConfigError("method.C", cfg.C, "a regularisation strength > 0")
        if cfg.trees < 1:
            raise ConfigError("method.trees", cfg.trees, "a number of trees >= 1")

    def form(self, family):
        return "encoder"  # features of the input text; labels from the task's fixed label set

    def apply(self, model, cfg, family, tokenizer):
        # imported here: scikit-learn takes seconds to import, and every `python -m bench` imports this module
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model.requires_grad_(False)
        if cfg.classifier == "logistic":
            classifier = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.C, max_iter=2000))
        else:
            classifier = RandomForestClassifier(n_estimators=cfg.trees, random_state=0, n_jobs=1)
        return ProbeModel(model, classifier, cfg.pooling)

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None):
        """One pass over the training split for features, then the classifier's own fit: one 'step'."""
        start, tokens, features, labels = time.perf_counter(), 0, [], []
        model.eval()
        with torch.no_grad():
            for batch in loader:
                tokens += count_tokens(batch)
                features.append(model.features(batch["input_ids"].to(device), batch["attention_mask"].to(device)))
                labels.append(batch["labels"])
        labels = torch.cat(labels)
        model.classifier.fit(torch.cat(features).numpy(), labels.numpy())
        return TrainResult(steps=1, step_seconds=[time.perf_counter() - start], tokens_timed=tokens,
                           examples_seen=len(labels), tokens_seen=tokens)

    def save(self, model, folder):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "classifier.pkl", "wb") as f:
            pickle.dump(model.classifier, f)

    def load(self, model, cfg, family, tokenizer, folder):
        probe = self.apply(model, cfg, family, tokenizer)
        with open(folder / "classifier.pkl", "rb") as f:  # written by this project's own save
            probe.classifier = pickle.load(f)
        return probe
