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

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, register


@dataclass
class ProbeSchema(MethodSchema):
    lr: float = 0.0  # nothing trains by gradient
    classifier: str = "logistic"  # logistic | forest
    pooling: str = "mean"  # mean over real tokens | last real token
    C: float = 1.0  # logistic regression: inverse regularisation strength
    trees: int = 200  # random forest size


@register
class Probe(Method):
    name = "probe"
    title = "frozen features + classifier"
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
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from bench.methods.nn.probe_model import ProbeModel  # deferred: torch

        model.requires_grad_(False)
        if cfg.classifier == "logistic":
            classifier = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.C, max_iter=2000))
        else:
            classifier = RandomForestClassifier(n_estimators=cfg.trees, random_state=0, n_jobs=1)
        return ProbeModel(model, classifier, cfg.pooling)

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None):
        """One pass over the training split for features, then the classifier's own fit: one 'step'."""
        from bench.train import TrainResult  # deferred: torch

        reading = time.perf_counter()
        batches = list(loader)  # tokenized and padded before the timed pass, as train() reads its batches
        start = time.perf_counter()
        examples, tokens = model.fit_classifier(batches, device)
        return TrainResult(
            steps=1,
            step_seconds=[time.perf_counter() - start],
            tokens_timed=tokens,
            examples_seen=examples,
            tokens_seen=tokens,
            data_seconds=start - reading,
        )

    def save(self, model, folder):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "classifier.pkl", "wb") as f:
            pickle.dump(model.classifier, f)

    def load(self, model, cfg, family, tokenizer, folder):
        probe = self.apply(model, cfg, family, tokenizer)
        with open(folder / "classifier.pkl", "rb") as f:  # written by this project's own save
            probe.classifier = pickle.load(f)
        return probe
