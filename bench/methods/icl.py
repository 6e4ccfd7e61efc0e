"""Few-shot prompting (Brown et al. 2020), the X-shot baseline: nothing trains.

Each evaluation prompt becomes the task's instruction, then k solved examples drawn from the
training split (seeded, a fresh draw per prompt, as GPT-3's evaluation does), then the prompt
itself. The model scores or generates exactly as a fine-tuned one would. Long demonstrations
need room: raise `task.max_length`, since prompts longer than it lose their beginning.

Lost in the middle (Liu et al. 2023): `similar_at=i` puts the training example most like the query (TF-IDF
cosine of their texts) at position i of the k (0: first, k-1: last, next to the query); the other k-1 are the
same draw whatever i is, so that runs at different positions differ in that one placement only.
"""

from dataclasses import dataclass, replace
from random import Random

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, register
from bench.tasks import continuation


@dataclass
class IclSchema(MethodSchema):
    lr: float = 0.0  # nothing trains
    shots: int = 4
    instruction: str | None = None  # None: the task's own
    separator: str = "\n\n"  # between instruction and examples
    similar_at: int | None = None  # the most similar training example's position among the shots; None: none


def most_similar(pool):
    """A function from an example to the example of `pool` whose text is nearest by TF-IDF cosine."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # deferred: scikit-learn, for this setting only

    vectorizer = TfidfVectorizer()
    matrix = vectorizer.fit_transform([d.text for d in pool])  # rows are L2-normalised: a product is a cosine

    def nearest(e):
        return pool[int((matrix @ vectorizer.transform([e.text]).T).toarray().argmax())]

    return nearest


@register
class Icl(Method):
    name = "icl"
    schema = IclSchema
    trains = False

    def label(self, row):
        at = row.get("similar_at")
        placed = f", most similar at {at:g}" if at is not None and at == at else ""  # NaN: not set
        return f"{row.shots:g}-shot prompting{placed}"

    def check(self, cfg, family):
        if cfg.shots < 0:
            raise ConfigError("method.shots", cfg.shots, "a number of examples >= 0")
        if cfg.similar_at is not None and not 0 <= cfg.similar_at < cfg.shots:
            raise ConfigError("method.similar_at", cfg.similar_at, f"a position from 0 to shots - 1 = {cfg.shots - 1}")
        if family.form != "text_to_text":
            return (
                f"few-shot prompting needs a model that reads prompts; the {family.name} family is an encoder "
                "with a new head"
            )
        return None

    def prepare(self, task, cfg, seed):
        rng = Random(seed)
        instruction = task.instruction if cfg.instruction is None else cfg.instruction

        nearest = most_similar(task.train) if cfg.similar_at is not None else None

        def with_shots(e):
            drawn = rng.sample(task.train, cfg.shots)
            if nearest is not None:
                similar = nearest(e)
                others = [d for d in drawn if d is not similar][: cfg.shots - 1]
                drawn = others[: cfg.similar_at] + [similar] + others[cfg.similar_at :]
            demos = [(d.prompt or d.text) + continuation(d.prompt or d.text, task.completion(d)) for d in drawn]
            return replace(
                e, prompt=cfg.separator.join(([instruction] if instruction else []) + demos + [e.prompt or e.text])
            )

        # a model that was shown examples goes on to write the next one: the separator ends its answer
        return replace(
            task,
            validation=[with_shots(e) for e in task.validation],
            test=[with_shots(e) for e in task.test],
            stop=cfg.separator,
            given_test=task.test,
        )

    def apply(self, model, cfg, family, tokenizer):
        model.requires_grad_(False)
        return model

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None):
        from bench.train import TrainResult  # deferred: torch

        return TrainResult()  # no steps: the record's time says so

    def save(self, model, folder):
        folder.mkdir(parents=True, exist_ok=True)  # nothing per task beyond the prompt

    def load(self, model, cfg, family, tokenizer, folder):
        return self.apply(model, cfg, family, tokenizer)
